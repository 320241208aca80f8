"""Acceptance check on photos nobody tuned for: edited copies of ../shared/data/holdout/.

The holdout photos are reserved for checking finished work. Nothing here chooses, fits or changes
anything: the shipped models and cuts run as they are, and the figures are only reported. Each holdout
photo is a base; ``copies.py``'s generator makes edited copies of it (seeded, the same edits and
strengths as the calibration data), and the truth is each base with its own copies. simsearch runs twice: on an
index with embeddings (``index --embed``) and on one of hashes only (a plain ``index``, the default).

The holdout set carries no labels of its own, and some of its photos are duplicates of each other (one
source ships re-encoded copies of another's files). A pair of two originals is scored as a false
positive whether or not it is one, so precision is a lower bound; every such pair found is listed with
its paths, to be judged by eye. Recall is also broken down by edit kind (crop, tilt, text and so on):
the share of (base, copy) pairs decided duplicates pair by pair, which the unlabeled duplicates cannot
disturb, and the share whose copy ends up in its base's group.

Peers in the same run, same scorer: imagededup's four hashes at their best threshold for this
collection, Immaculate 0.3 at its defaults (from ``.venv-peers``, where present).

Usage: python benchmarks/acceptance.py [--seed 1] [--copies 6]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import copies
from common import REPO, write
from keepers import keeper_counts
from PIL import Image
from quality import imagededup_rows, immaculate_rows, row

import simsearch
from simsearch import duplicates
from simsearch.evaluate import evaluate

HOLDOUT = REPO.parent / "shared" / "data" / "holdout" / "images"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def holdout_units() -> list[dict]:
    """One unit per holdout photo that decodes: the base of its own copies."""
    units = []
    for path in sorted(p for p in HOLDOUT.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        try:
            with Image.open(path) as img:
                img.load()
        except Exception:  # noqa: BLE001 - a photo Pillow cannot open is no base
            continue
        units.append({"key": str(path.relative_to(HOLDOUT)), "root": HOLDOUT,
                      "captures": [[str(path.relative_to(HOLDOUT))]]})
    return units


def edit_kind(step: str) -> str:
    """The kind of one edit step as ``copies.py`` describes it ("crop 28% cut" -> "crop", "JPEG q30" -> "jpeg")."""
    return re.match(r"[A-Za-z]+", step).group(0).lower()


def simsearch_checks(images: Path, truth: str, edits: dict, embed: str | None) -> dict:
    """The default's scores on an index made with ``embed`` (None: hashes only, a plain ``index``), then for each
    edit kind the share of (base, copy) pairs decided duplicates (pair by pair, whatever else is grouped) and the
    share whose copy lands in its base's group."""
    tmp = Path(tempfile.mkdtemp())
    try:
        idx = simsearch.open_index(tmp / "ix", create=True)
        idx.add([images], workers=2, embed=embed)
        default = next(s for s in evaluate(idx, truth, level="copy") if s.default)
        groups = idx.duplicates()
        group_of = {r.path: n for n, group in enumerate(groups) for r in group}
        decided = duplicates.decide(idx._reads, "copy")
        d = decided.decisions
        matched = {frozenset((decided.row_record(a).path, decided.row_record(b).path))
                   for a, b, yes in zip(d.pairs.left.tolist(), d.pairs.right.tolist(), d.matched().tolist()) if yes}
        idx.close()
    finally:
        shutil.rmtree(tmp)
    total, as_pair, in_group = Counter(), Counter(), Counter()
    for name, made in edits.items():
        for kind in {edit_kind(step) for step in made["edits"]}:
            total[kind] += 1
            as_pair[kind] += frozenset((name, made["base"])) in matched
            in_group[kind] += name in group_of and group_of.get(made["base"]) == group_of[name]
    unit = {name: name.split("_", 1)[0] for name in group_of}
    originals = sorted(name for name in group_of if "_edit" not in name)
    across = [[a, b] for i, a in enumerate(originals) for b in originals[i + 1:]
              if group_of[a] == group_of[b] and unit[a] != unit[b]]
    return {"simsearch (default)": row(default),
            "recall_by_edit_kind": {k: {"copies": total[k], "decided_duplicate_of_base": round(as_pair[k] / total[k], 3),
                                        "grouped_with_base": round(in_group[k] / total[k], 3)}
                                    for k in sorted(total)},
            "copies_decided_duplicate_of_base": round(sum(frozenset((n, m["base"])) in matched
                                                          for n, m in edits.items()) / len(edits), 4),
            "copies_grouped_with_base": round(sum(n in group_of and group_of.get(m["base"]) == group_of[n]
                                                  for n, m in edits.items()) / len(edits), 4),
            "originals_grouped_together": across,
            "keepers": keeper_counts(groups, lambda path: "_edit" not in path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--copies", type=int, default=6)
    opts = parser.parse_args()
    if not HOLDOUT.is_dir():
        print(f"SKIPPED: {HOLDOUT} is absent (the hold-out photos live in ../shared/data)")
        sys.exit(0)
    work = Path(tempfile.mkdtemp())
    try:
        units = holdout_units()
        summary = copies.write_split(units, work / "holdout", random.Random(opts.seed), opts.copies)
        images, truth = work / "holdout" / "images", str(work / "holdout" / "copy.json")
        edits = json.loads((work / "holdout" / "edits.json").read_text())
        results = simsearch_checks(images, truth, edits, "efficientnet_lite0")
        results["simsearch, hashes only (index without --embed)"] = simsearch_checks(images, truth, edits, None)
        results.update(imagededup_rows(images, truth, None))
        results.update(immaculate_rows(images, truth, None))
    finally:
        shutil.rmtree(work)
    write("acceptance", {
        "note": "edited copies (copies.py edits, seed below) of the holdout photos, truth = each base with its "
                "copies; shipped models and cuts as they are, nothing chosen here; pairs of two originals count "
                "as false even where they are real duplicates (listed for a human to judge)",
        "seed": opts.seed, "copies_per_base": opts.copies, "collection": summary, "results": results,
    })


if __name__ == "__main__":
    main()
