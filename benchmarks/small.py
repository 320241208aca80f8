"""Small collections: the default decision (level copy) where a collection holds a few pictures.

In a collection of a few dozen images, an image's neighbourhood is not other pictures of its kind: ten
consecutive frames of one video stand out of it as copies do. Each collection here is a few validation units
(bases the models were never fitted on, bursts of video frames among them) drawn with a seed of its own, with
their edited copies (``copies.write_split``). Scored like ``quality.py`` (pair-level precision, recall and F1 of
the groups), with Immaculate at its defaults (``pdq``, ``sscd``) from the bench environment as the peer.

Usage: python benchmarks/small.py
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import copies
from common import require_dups, write
from quality import immaculate_rows, row

import simsearch
from simsearch.evaluate import evaluate

# (seed, units, copies a base): the collections, drawn from the validation units
COLLECTIONS = ((21, 5, 2), (22, 10, 1), (23, 10, 3), (24, 20, 2), (25, 10, 2), (26, 25, 1))


def main() -> None:
    require_dups()
    units = [u for u in copies.base_groups() if copies.split_of(u["key"]) == "val"]
    work = Path(tempfile.mkdtemp())
    results = {}
    try:
        for seed, size, per_base in COLLECTIONS:
            rng = random.Random(seed)
            folder = work / f"seed{seed}"
            made = copies.write_split(rng.sample(units, size), folder, rng, per_base)
            idx = simsearch.open_index(work / f"ix{seed}", create=True)
            idx.add([folder / "images"], workers=2, embed="efficientnet_lite0")
            truth = str(folder / "copy.json")
            default = next(s for s in evaluate(idx, truth, level="copy") if s.default)
            idx.close()
            name = f"seed {seed}, {size} units, {per_base} copies a base"
            results[name] = {"images": made["images"], "simsearch (default)": row(default),
                             **immaculate_rows(folder / "images", truth, None)}
            print(name, results[name], flush=True)
    finally:
        shutil.rmtree(work)
    write("small", {"note": "level copy on small generated collections of validation units (bursts of video frames "
                            "among them), pair-level scores of the groups; Immaculate at its defaults",
                    "collections": results})


if __name__ == "__main__":
    main()
