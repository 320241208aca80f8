"""Which image a duplicate group keeps, on generated families (issue 10): is it the original?

Three collections of the validation bases (never fitted on) with their edited copies, drawn by ``copies.py``
with seeds 8, 6 and 5 and 12, 24 and 64 copies a base. For each, of the groups (level copy, defaults) that hold
an original: how many keep an original first, against the earlier rules in the same run: the most picture
whatever its shape (``duplicates.keeper_order``, before shapes) and the largest image (``centre_order``, before
picture sizes). Also, over every image, how often the margins measure
(``simsearch.margins``) finds a picture smaller than the image, by kind: originals, framed copies, copies turned
with filled corners, and the other copies.

Usage: python benchmarks/keepers.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from common import require_dups, write
from quality import val_only

import simsearch
from simsearch.duplicates import centre_order, keeper_order

FAMILIES = ((8, 12), (6, 24), (5, 64))  # (seed, copies a base)


def kind(name: str, edits: dict) -> str:
    steps = edits.get(name, {}).get("edits")
    if steps is None:
        return "original"
    if any(s.startswith("border") for s in steps):
        return "framed copy"
    if any("white corners" in s for s in steps):
        return "turned copy, corners filled"
    return "other copy"


def family(folder: Path, seed: int, copies: int, flagged: Counter, seen: Counter) -> dict:
    split = val_only(folder / "val", seed, copies)
    edits = json.loads((split / "edits.json").read_text())
    idx = simsearch.open_index(folder / "ix", create=True)
    try:
        idx.add([split / "images"], workers=2, embed="efficientnet_lite0")
        groups = idx.duplicates()
        records = idx._reads.records(idx._reads.image_ids()).values()
        for rec in records:
            k = kind(rec.path, edits)
            seen[k] += 1
            flagged[k] += rec.picture[0] * rec.picture[1] < rec.width * rec.height
    finally:
        idx.close()
    return {"images": len(records), **keeper_counts(groups, lambda path: path not in edits)}


def keeper_counts(groups: list, original) -> dict:
    """Of the groups that hold an original (``original(path)``), how many keep one first, and how many would
    with the earlier rules: the most picture whatever its shape (before shapes), the largest image (before
    picture sizes)."""
    holding = [g for g in groups if any(original(r.path) for r in g)]
    return {"groups_holding_an_original": len(holding),
            "keeping_an_original": sum(original(g[0].path) for g in holding),
            "most_picture_an_original": sum(original(min(g, key=keeper_order).path) for g in holding),
            "largest_image_an_original": sum(original(min(g, key=centre_order).path) for g in holding)}


def main() -> None:
    require_dups()  # the bases include dups images
    work = Path(tempfile.mkdtemp())
    flagged, seen, results = Counter(), Counter(), {}
    try:
        for seed, copies in FAMILIES:
            results[f"seed {seed}, {copies} copies"] = family(work / f"seed{seed}", seed, copies, flagged, seen)
    finally:
        shutil.rmtree(work)
    write("keepers", {
        "note": "groups at level copy, defaults; keeper = the first of a group (the shape most of the group shares, "
                "then the most picture, margins counted at 0.95); most picture whatever its shape (the rule before "
                "shapes) and the largest image (the rule before picture sizes) counted in the same run",
        "families": results,
        "picture_smaller_than_image": {k: f"{flagged[k]} of {seen[k]}" for k in sorted(seen)},
    })


if __name__ == "__main__":
    main()
