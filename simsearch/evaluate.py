"""Pair-level precision, recall and F1 of duplicate groups against a ground truth
map in imagededup's format ``{path: [paths of its duplicates]}``."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from itertools import combinations

from .errors import InvalidArgument, SimsearchWarning
from .hamming import HASH_BITS

CUT_SWEEP = (0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95)
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
    cut: float | None = None  # auto: the probability cut
    level: str | None = None  # auto: copy or scene
    average_precision: float | None = None  # auto: of the pair scores, threshold-free
    default: bool = False  # the setting duplicates uses when given no threshold


def load_ground_truth(path: str, exclude: set[str] = frozenset()) -> tuple[set[str], set[tuple[str, str]]]:
    """(labelled paths, true pairs), leaving out the excluded paths."""
    try:
        with open(path) as fh:
            truth = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read ground truth {path}: {exc}") from None
    if not isinstance(truth, dict):
        raise InvalidArgument(f"ground truth {path} is not a {{path: [duplicates]}} map")
    for key, dups in truth.items():  # a string would be read letter by letter
        if not isinstance(dups, list) or not all(isinstance(d, str) for d in dups):
            raise InvalidArgument(f"ground truth {path}: the duplicates of {key!r} are not a list of paths")
    # a path named only as another's duplicate is labelled too (imagededup's maps list every image as a key)
    keys = {k for k in truth.keys() | {d for dups in truth.values() for d in dups} if k not in exclude}
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
             exclude: str | None = None, level: str = "copy", cuts=None) -> list[Score]:
    """Scores of each method at each setting: ``auto`` (calibrated decisions at ``level``) over
    probability ``cuts`` with its average precision, hashes over ``distances`` (default 0-20),
    ``embedding`` over ``similarities`` (default 0.80-0.995), ``exact`` once.
    ``methods`` defaults to every method the index supports."""
    keys, pairs = load_ground_truth(ground_truth, read_exclude(exclude))
    records = {r.id: r.path for r in index.images()}
    missing = keys - set(records.values())
    if missing == keys:
        raise InvalidArgument("no ground-truth path is in the index: index the folder the map's paths are relative to")
    if missing:
        warnings.warn(SimsearchWarning(
            f"{len(missing)} of {len(keys)} ground-truth paths are not in the index (the first: {min(missing)}): "
            "their true pairs count as missed"), stacklevel=2)
    embedded = bool(index.embedding_models())
    if methods is None:
        from .duplicates import DUPLICATE_METHODS  # noqa: PLC0415

        methods = [m for m in DUPLICATE_METHODS if m != "embedding" or embedded]
    scores = []
    for method in methods:
        if method == "auto":
            scores.extend(_calibrated_scores(index, records, keys, pairs, level, cuts))
            continue
        for d, s in _settings(method, distances, similarities):
            groups = [[records[i] for i in g] for g in index.duplicate_ids(method, d, s)]
            scores.append(score(groups, keys, pairs, method, d, s))
    return scores


def _calibrated_scores(index, records: dict, keys: set, true_pairs: set, level: str, cuts) -> list[Score]:
    """Grouped precision, recall and F1 of calibrated decisions at each cut, and the average
    precision of their pair scores (true pairs never proposed as candidates count as misses)."""
    from .decide import default_cut  # noqa: PLC0415
    from .duplicates import decide  # noqa: PLC0415

    decided = decide(index._reads, level)
    d = decided.decisions
    ids = decided.collection.ids
    names = [records.get(int(i)) for i in ids]
    scored = [(float(p), tuple(sorted((names[a], names[b])))) for p, a, b in zip(d.score, d.pairs.left, d.pairs.right)
              if names[a] in keys and names[b] in keys]
    ap = average_precision(scored, true_pairs)
    default = default_cut(level)
    out = []
    for cut in sorted(set(cuts or CUT_SWEEP) | {default}):
        d.cut = cut
        groups = [[names[r] for r in g] for g in decided.groups()]
        s = score(groups, keys, true_pairs, "auto", None)
        out.append(Score(s.method, None, s.precision, s.recall, s.f1, s.predicted_pairs, s.true_pairs, None, cut,
                         level, ap, cut == default))
    d.cut = default
    return out


def average_precision(scored: list[tuple[float, tuple]], true_pairs: set) -> float:
    """Area under the precision-recall curve of pairs ranked by score, over every true pair."""
    if not true_pairs:
        return 1.0
    hits, total = 0, 0.0
    for rank, (_, pair) in enumerate(sorted(scored, key=lambda x: -x[0]), 1):
        if pair in true_pairs:
            hits += 1
            total += hits / rank
    return total / len(true_pairs)


def _settings(method: str, distances, similarities) -> list[tuple]:
    """(max distance, min similarity) pairs to score ``method`` at."""
    for d in distances or ():
        if not 0 <= d < HASH_BITS:
            raise InvalidArgument(f"max distance must be between 0 and {HASH_BITS - 1}, got {d}")
    if method == "exact":
        return [(None, None)]
    if method == "embedding":
        return [(None, s) for s in (similarities or SIMILARITY_SWEEP)]
    return [(d, None) for d in (distances or DISTANCE_SWEEP)]


def best(scores: list[Score]) -> dict[str, Score]:
    """The highest-F1 score of each method."""
    out: dict[str, Score] = {}
    for s in scores:
        if s.method not in out or s.f1 > out[s.method].f1:
            out[s.method] = s
    return out
