"""Sparse collections: the level copy decision where an image's neighbourhood holds other pictures, not its copies.

The calibration data holds families of copies, so an image's neighbourhood is full of its own copies; in a
sparse collection it is full of other pictures, and a pair stands out of it more easily. Each collection here
is generated (``copies.py``, a seed of its own): the fit and validation bases with one copy each, as more
pictures beside each other. Pair-level counts of the decided pairs (before grouping) against the generator's
truth: true pairs decided, false pairs (and how many of them are other shots of one scene), pairs verified.

Usage: python benchmarks/sparse.py [--seeds 12 13]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import copies
import numpy as np
from common import require_dups, write

import simsearch
from simsearch import duplicates


def collection(seed: int, work: Path) -> tuple[Path, set, set]:
    """(images folder, same-capture pairs, same-scene pairs), names prefixed by split."""
    sys.argv = ["copies.py", str(work / "made"), "--seed", str(seed), "--copies", "1"]
    copies.main()
    folder = work / "images"
    folder.mkdir()
    truth: dict[str, set] = {"copy": set(), "scene": set()}
    for split in ("fit", "val"):
        for path in (work / "made" / split / "images").iterdir():
            shutil.copy(path, folder / f"{split}_{path.name}")
        for level, pairs in truth.items():
            for a, others in json.loads((work / "made" / split / f"{level}.json").read_text()).items():
                pairs.update(frozenset((f"{split}_{a}", f"{split}_{b}")) for b in others)
    return folder, truth["copy"], truth["scene"]


def counts(idx, copy_pairs: set, scene_pairs: set) -> dict:
    decided = duplicates.decide(idx._reads, "copy")
    d = decided.decisions
    said = {frozenset((decided.row_record(d.pairs.left[k]).path, decided.row_record(d.pairs.right[k]).path))
            for k in np.flatnonzero(d.matched())}
    false = said - copy_pairs
    return {"true_pairs_decided": len(said & copy_pairs), "true_pairs": len(copy_pairs), "false_pairs": len(false),
            "false_pairs_same_scene": len(false & scene_pairs), "pairs_verified": int(d.verified.sum())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[12, 13])
    opts = parser.parse_args()
    require_dups()
    out = {}
    for seed in opts.seeds:
        work = Path(tempfile.mkdtemp())
        try:
            folder, copy_pairs, scene_pairs = collection(seed, work)
            with simsearch.open_index(work / "ix", create=True) as idx:
                idx.add([folder], workers=2, embed="efficientnet_lite0")
                out[f"seed {seed}"] = {"images": sum(1 for _ in folder.iterdir()),
                                       **counts(idx, copy_pairs, scene_pairs)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    write("sparse", {"note": "level copy on sparse generated collections (fit and validation bases, one copy "
                             "each), pair counts before grouping", "collections": out})


if __name__ == "__main__":
    main()
