"""Duplicate quality on ../shared/data/dups (strict ground truth, unlabeled frames
excluded): pair-level precision, recall and F1 of each simsearch method (auto,
embedding, exact, the four hashes) at its default threshold and at its best one,
beside imagededup's four hash methods at their best threshold, scored by the same code.

Usage: python benchmarks/quality.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from common import require_dups, write

import simsearch
from simsearch.evaluate import best, evaluate, load_ground_truth, read_exclude, score
from simsearch.duplicates import (
    AUTO_MIN_SIMILARITY,
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MIN_SIMILARITY,
    DUPLICATE_METHODS,
)

DEFAULT_SIMILARITY = {"auto": AUTO_MIN_SIMILARITY, "embedding": DEFAULT_MIN_SIMILARITY}


def ours(dups: Path) -> tuple[list, dict]:
    tmp = Path(tempfile.mkdtemp())
    try:
        idx = simsearch.open_index(tmp / "ix", create=True)
        idx.add([dups / "images"], workers=2, embed="efficientnet_lite0")
        scores = evaluate(idx, str(dups / "ground_truth.json"), methods=DUPLICATE_METHODS,
                          exclude=str(dups / "unlabeled_exclude.txt"))
        idx.close()
    finally:
        shutil.rmtree(tmp)
    return scores, {s.method: s for s in scores if _is_default(s)}


def _is_default(s) -> bool:
    if s.method in DEFAULT_SIMILARITY:
        return s.min_similarity == DEFAULT_SIMILARITY[s.method]
    return s.method == "exact" or s.max_distance == DEFAULT_MAX_DISTANCE[s.method]


def imagededup_scores(dups: Path) -> dict:
    from imagededup.methods import AHash, DHash, PHash, WHash

    keys, pairs = load_ground_truth(str(dups / "ground_truth.json"), read_exclude(str(dups / "unlabeled_exclude.txt")))
    out = {}
    for name, cls in {"phash": PHash, "dhash": DHash, "whash": WHash, "ahash": AHash}.items():
        method = cls(verbose=False)
        encodings = method.encode_images(image_dir=str(dups / "images"), recursive=True, num_enc_workers=2)
        sweep = []
        for t in range(0, 21):
            found = method.find_duplicates(encoding_map=encodings, max_distance_threshold=t)
            groups = [[k, *v] for k, v in found.items() if v]  # imagededup's map: pairs, not components
            sweep.append(score(groups, keys, pairs, f"imagededup {name}", t))
        out[name] = best(sweep)[f"imagededup {name}"]
    return out


def row(s) -> dict:
    return {"method": s.method, "max_distance": s.max_distance, "min_similarity": s.min_similarity,
            "precision": round(s.precision, 4),
            "recall": round(s.recall, 4), "f1": round(s.f1, 4)}


def main() -> None:
    dups = require_dups()
    scores, defaults = ours(dups)
    top = best(scores)
    theirs = imagededup_scores(dups)
    write("quality", {
        "data": "shared/data/dups: strict ground_truth.json, unlabeled_exclude.txt left out",
        "simsearch_default_threshold": [row(s) for s in defaults.values()],
        "simsearch_best_threshold": [row(s) for s in top.values()],
        "imagededup_best_threshold": [row(s) for s in theirs.values()],
        "simsearch_sweep": [row(s) for s in scores],
    })


if __name__ == "__main__":
    main()
