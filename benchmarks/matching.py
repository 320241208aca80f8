"""Inventory matching: new photos decided against an indexed catalogue (``simsearch match``), beside the
workflow it replaces (index the new photos into the catalogue's index, then run ``duplicates``), in one run.

The data is generated (``copies.py``, a seed of its own): the catalogue is every validation base (never
fitted on) with its own duplicates and same-scene shots, plus the whole fit split (other pictures, with
their copies) as distractors; the new photos are the validation bases' edited copies, each a duplicate of
its base. The catalogue is indexed with embeddings and ``duplicates`` is run on it once, as a maintained
catalogue has been (its verifications kept). Then, whole commands timed in this run:
- ``simsearch match --from-file NEW.txt --format json`` against the catalogue's index;
- the peer: the same index copied, ``simsearch index NEW --embed`` into it, then ``simsearch duplicates
  --format json`` (the catalogue's own pairs are kept; the new photos' are verified).
Scored on the (new photo, catalogue image) pairs alone, with the generator's truth (same capture):
precision, recall, and the share of new photos whose base is found.

Twice: for 20 new photos (a few new listings, spread over the bases) and for all of them.

Usage: python benchmarks/matching.py [--seed 10] [--copies 6]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import copies
from common import REPO, require_dups, write

SIMSEARCH = [sys.executable, "-m", "simsearch.cli"]


def run(*args) -> tuple[float, str]:
    """Seconds and stdout of a whole simsearch command."""
    t0 = time.perf_counter()
    done = subprocess.run([*SIMSEARCH, *map(str, args)], capture_output=True, text=True, check=True, cwd=REPO)
    return time.perf_counter() - t0, done.stdout


def split(made: Path, work: Path) -> tuple[Path, Path, dict, dict]:
    """(catalogue folder, new photos folder, each new photo's base, the same-capture truth)."""
    val = made / "val"
    edits = json.loads((val / "edits.json").read_text())
    truth = json.loads((val / "copy.json").read_text())
    catalogue, new = work / "catalogue", work / "new"
    catalogue.mkdir()
    new.mkdir()
    for path in sorted((made / "fit" / "images").iterdir()):  # distractors: no picture of the fit split is in val
        shutil.copy(path, catalogue / f"fit_{path.name}")
    for path in sorted((val / "images").iterdir()):
        shutil.copy(path, (new if path.name in edits else catalogue) / path.name)
    return catalogue, new, {name: made["base"] for name, made in edits.items()}, truth


def score(found: dict[str, set[str]], base: dict[str, str], truth: dict, catalogue: set[str]) -> dict:
    """Pair precision and recall over (new photo, catalogue image), and the share of new photos whose base
    is among their matches."""
    true_pairs = {(q, c) for q in base for c in truth.get(q, []) if c in catalogue}
    said = {(q, c) for q, matches in found.items() for c in matches if c in catalogue}
    hits = len(said & true_pairs)
    precision, recall = hits / max(len(said), 1), hits / max(len(true_pairs), 1)
    return {"precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
            "base_found": round(sum(base[q] in found.get(q, set()) for q in base) / len(base), 4),
            "pairs_said": len(said), "true_pairs": len(true_pairs)}


def both_ways(work: Path, index: Path, photos: list[Path], base: dict, truth: dict, names: set[str]) -> dict:
    """``match`` against the catalogue, and the peer on a copy of its index, for these new photos."""
    queries = work / f"new-{len(photos)}.txt"
    queries.write_text("".join(f"{p}\n" for p in photos))
    folder = work / f"new-{len(photos)}"
    folder.mkdir()
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    peer_index = work / f"ix-peer-{len(photos)}"
    shutil.copytree(index, peer_index)
    match_s, out = run("match", "--from-file", queries, "--index", index, "--format", "json")
    matched = {Path(block["query"]).name: {Path(p["a"]).name for p in block["duplicates"]} for block in json.loads(out)}
    add_s, _ = run("index", folder, "--index", peer_index, "--embed", "--workers", "2")
    dups_s, out = run("duplicates", "--index", peer_index, "--format", "json")
    grouped = {Path(k).name: {Path(v).name for v in vs} for k, vs in json.loads(out).items()}
    asked = {p.name: base[p.name] for p in photos}
    return {"new_photos": len(photos),
            "match": {"seconds": round(match_s, 2), "seconds_per_photo": round(match_s / len(photos), 4),
                      **score(matched, asked, truth, names)},
            "peer_index_then_duplicates": {"seconds": round(add_s + dups_s, 2), "index_seconds": round(add_s, 2),
                                           "duplicates_seconds": round(dups_s, 2),
                                           **score({q: grouped.get(q, set()) for q in asked}, asked, truth, names)},
            "speedup": round((add_s + dups_s) / match_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--copies", type=int, default=6)
    opts = parser.parse_args()
    require_dups()
    work = Path(tempfile.mkdtemp())
    try:
        sys.argv = ["copies.py", str(work / "made"), "--seed", str(opts.seed), "--copies", str(opts.copies)]
        copies.main()
        catalogue, new, base, truth = split(work / "made", work)
        names = {p.name for p in catalogue.iterdir()}
        index = work / "ix"
        indexed_s, _ = run("index", catalogue, "--index", index, "--embed", "--workers", "2")
        run("duplicates", "--index", index, "--format", "json")  # the maintained catalogue's kept verifications
        photos = sorted(new.iterdir())
        few = photos[:: max(1, len(photos) // 20)][:20]  # a few new listings, spread over the bases
        result = {"seed": opts.seed, "copies_per_base": opts.copies, "catalogue_images": len(names),
                  "catalogue_index_seconds": round(indexed_s, 2),
                  "batches": [both_ways(work, index, batch, base, truth, names) for batch in (few, photos)]}
        print(json.dumps(result, indent=2))
        write("matching", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
