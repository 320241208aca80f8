"""Pair-level precision, recall and F1 of duplicate groups against a ground truth
map in imagededup's format ``{path: [paths of its duplicates]}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations

from .errors import InvalidArgument
from .hamming import HASH_BITS


SIMILARITY_SWEEP = (0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995)
DISTANCE_SWEEP = tuple(range(0, 21))


@dataclass(frozen=True)
class Score:
    method: str
    max_distance: int | None
    precision: float
    recall: float
    f1: float
    predicted_pairs: int
    true_pairs: int
    min_similarity: float | None = None


def load_ground_truth(path: str, exclude: set[str] = frozenset()) -> tuple[set[str], set[tuple[str, str]]]:
    """(labelled paths, true pairs), leaving out the excluded paths."""
    try:
        with open(path) as fh:
            truth = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read ground truth {path}: {exc}") from None
    if not isinstance(truth, dict):
        raise InvalidArgument(f"ground truth {path} is not a {{path: [duplicates]}} map")
    keys = {k for k in truth if k not in exclude}
    pairs = {tuple(sorted((a, b))) for a, dups in truth.items() for b in dups if a in keys and b in keys and a != b}
    return keys, pairs


def read_exclude(path: str | None) -> set[str]:
    if path is None:
        return set()
    try:
        with open(path) as fh:
            return {line.strip() for line in fh if line.strip() and not line.startswith("#")}
    except OSError as exc:
        raise InvalidArgument(f"cannot read exclude list {path}: {exc.strerror}") from None


def score(groups: list[list[str]], keys: set[str], true_pairs: set, method: str, distance,
          similarity: float | None = None) -> Score:
    predicted = set()
    for group in groups:
        members = sorted(p for p in group if p in keys)
        predicted.update(combinations(members, 2))
    hits = len(predicted & true_pairs)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(true_pairs) if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(method, distance, precision, recall, f1, len(predicted), len(true_pairs), similarity)


def evaluate(index, ground_truth: str, *, methods=None, distances=None, similarities=None,
             exclude: str | None = None) -> list[Score]:
    """Scores of each method at each setting: hashes over ``distances`` (default 0-20),
    ``embedding`` and ``auto`` over ``similarities`` (default 0.80-0.99; ``auto``
    over distances when the index has no embeddings), ``exact`` once.
    ``methods`` defaults to every method the index supports."""
    keys, pairs = load_ground_truth(ground_truth, read_exclude(exclude))
    records = {r.id: r.path for r in index.images()}
    if not keys & set(records.values()):
        raise InvalidArgument("no ground-truth path is in the index: index the folder the map's paths are relative to")
    embedded = bool(index.embedding_models())
    if methods is None:
        from .duplicates import DUPLICATE_METHODS  # noqa: PLC0415

        methods = [m for m in DUPLICATE_METHODS if m != "embedding" or embedded]
    scores = []
    for method in methods:
        for d, s in _settings(method, embedded, distances, similarities):
            groups = [[records[i] for i in g] for g in index.duplicate_ids(method, d, s)]
            scores.append(score(groups, keys, pairs, method, d, s))
    return scores


def _settings(method: str, embedded: bool, distances, similarities) -> list[tuple]:
    """(max distance, min similarity) pairs to score ``method`` at."""
    for d in distances or ():
        if not 0 <= d < HASH_BITS:
            raise InvalidArgument(f"max distance must be between 0 and {HASH_BITS - 1}, got {d}")
    if method == "exact":
        return [(None, None)]
    if method == "embedding" or (method == "auto" and embedded):
        return [(None, s) for s in (similarities or SIMILARITY_SWEEP)]
    return [(d, None) for d in (distances or DISTANCE_SWEEP)]


def best(scores: list[Score]) -> dict[str, Score]:
    """The highest-F1 score of each method."""
    out: dict[str, Score] = {}
    for s in scores:
        if s.method not in out or s.f1 > out[s.method].f1:
            out[s.method] = s
    return out
