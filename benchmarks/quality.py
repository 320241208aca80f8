"""Duplicate quality with one setting for every collection, beside the peers, all scored by the same code
(pair-level precision, recall and F1 of the groups; simsearch's threshold-free average precision too).

Collections:
- ``dups strict``: ../shared/data/dups, strict ground truth, the unlabeled video frames left out;
- ``dups same-scene``: the same images, same-scene ground truth (scored at ``--level scene``);
- ``dups same-scene, no potato frames``: the same, every ``ugriffo_potatoes`` image left out of the
  scoring too. Its 16 labelled frames are 4 runs of 4 consecutive video frames of one potato, each
  frame labelled a group of its own: bursts, which the scene level is asked to group, so the first
  row counts every such pair as a false positive. This row shows what remains without them;
- ``generated val (copy)`` and ``(scene)``: the validation split of ``copies.py`` (seed 0), whose bases
  the shipped models were never fitted on;
- ``generated val, seed 2, 8 copies`` and ``seed 3, 16 copies``: the same bases with other edits, drawn
  from other seeds, and more copies of each (so more pairs between two edited copies).
- ``generated val, seed 5, 64 copies``: the same bases in families of 65 (a listing photo re-uploaded
  many times), drawn for the validation split alone. An image is compared with its nearest neighbours
  only, so a copy its keeper missed can match only a part of so large a group.
- ``generated val, thumbnails``: the same bases shrunk to 120 to 400 pixels on their long side before
  6 copies each are made (seed 9): few keypoints for verification.
- ``generated val, seed 11, 1 copy``: the same bases with one copy each (seed 11): a sparse collection, where
  an image's neighbourhood is mostly other pictures, so a pair stands out of it more easily than in families.
- ``generated val, seed 14, sellers' marks``: the same bases with two copies each and a copy stamped with one of
  3 sellers' marks (``copies.py --marks``): stamped photos of different bases match on the mark alone.

simsearch runs at its defaults (level copy, or scene where the truth is same-scene, calibrated cut);
its single-feature rules are listed at their best setting per collection, which no user can know in
advance. imagededup's four hashes are listed at their best threshold per collection (the same
advantage). Immaculate 0.3 runs at its defaults, ``pdq`` and ``sscd``, from the separate Python 3.12
environment that ``make bench`` creates (``.venv-peers``); where it is absent, it is left out and said so.

Usage: python benchmarks/quality.py
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import copies
from common import REPO, require_dups, write

import simsearch
from simsearch.evaluate import best, evaluate, load_ground_truth, read_exclude, score

PEERS_BIN = REPO / ".venv-peers" / "bin" / "immaculate"


def simsearch_rows(images: Path, truths: list[tuple[str, str, str | None, str]]) -> dict:
    """Per collection: the default decision and the single-feature rules at their best, on an index with
    embeddings (``index --embed``), and the default decision on an index of hashes only (plain ``index``)."""
    tmp = Path(tempfile.mkdtemp())
    out = {}
    try:
        idx = simsearch.open_index(tmp / "ix", create=True)
        idx.add([images], workers=2, embed="efficientnet_lite0")
        hashes = simsearch.open_index(tmp / "hashes", create=True)
        hashes.add([images], workers=2)
        for name, truth, exclude, level in truths:
            scores = evaluate(idx, truth, exclude=exclude, level=level)
            default = next(s for s in scores if s.default)
            rules = best([s for s in scores if s.method != "auto"])
            hashes_default = next(s for s in evaluate(hashes, truth, exclude=exclude, level=level, methods=["auto"])
                                  if s.default)
            out[name] = {"simsearch (default)": row(default),
                         "simsearch, hashes only (default)": row(hashes_default),
                         **{f"simsearch --by {m} (best)": row(s) for m, s in rules.items()}}
        idx.close()
        hashes.close()
    finally:
        shutil.rmtree(tmp)
    return out


def imagededup_rows(images: Path, truth: str, exclude: str | None) -> dict:
    from imagededup.methods import AHash, DHash, PHash, WHash

    keys, pairs = load_ground_truth(truth, read_exclude(exclude))
    out = {}
    for name, cls in {"phash": PHash, "dhash": DHash, "whash": WHash, "ahash": AHash}.items():
        method = cls(verbose=False)
        encodings = method.encode_images(image_dir=str(images), recursive=True, num_enc_workers=2)
        sweep = []
        for t in range(0, 21):
            found = method.find_duplicates(encoding_map=encodings, max_distance_threshold=t)
            groups = [[k, *v] for k, v in found.items() if v]  # imagededup's map: pairs, not components
            sweep.append(score(groups, keys, pairs, f"imagededup {name}", t))
        out[f"imagededup {name} (best)"] = row(best(sweep)[f"imagededup {name}"])
    return out


def immaculate_rows(images: Path, truth: str, exclude: str | None) -> dict:
    if not PEERS_BIN.exists():
        return {"immaculate": "not run: .venv-peers is absent (make bench creates it)"}
    keys, pairs = load_ground_truth(truth, read_exclude(exclude))
    out = {}
    for method in ("pdq", "sscd"):
        done = subprocess.run([str(PEERS_BIN), str(images), "--json", "--method", method], capture_output=True,
                              text=True, check=True)
        found = json.loads(done.stdout)
        groups = [[str(Path(p).relative_to(images)) for p in g] for g in found["exact"] + found["near"]]
        out[f"immaculate {method} (default)"] = row(score(groups, keys, pairs, f"immaculate {method}", None))
    return out


def row(s) -> dict:
    out = {"precision": round(s.precision, 4), "recall": round(s.recall, 4), "f1": round(s.f1, 4)}
    if s.cut is not None:
        out.update(level=s.level, cut=s.cut, average_precision=round(s.average_precision, 4))
    if s.max_distance is not None:
        out["max_distance"] = s.max_distance
    if s.min_similarity is not None:
        out["min_similarity"] = s.min_similarity
    return out


def generated_val(folder: Path, seed: int, copies_per_base: int) -> Path:
    """The validation split of a ``copies.py`` collection: bases the shipped models were never fitted on."""
    sys.argv = ["copies.py", str(folder), "--seed", str(seed), "--copies", str(copies_per_base)]
    copies.main()
    return folder / "val"


def val_only(folder: Path, seed: int, copies_per_base: int, small_share: float = 0.0, marks: int = 0) -> Path:
    """The validation bases with their copies, drawn for that split alone (no fit split made)."""
    units = [u for u in copies.base_groups() if copies.split_of(u["key"]) == "val"]
    copies.write_split(units, folder, random.Random(seed), copies_per_base, small_share, marks)
    return folder


def scored_collections(dups: Path, generated: Path,
                       make: bool = True) -> dict[str, tuple[Path, str, str | None, str]]:
    """Every collection scored, by name: (images, ground truth, exclude list, level). The generated ones live
    under ``generated``: written here with ``make``, else written there before (they are seeded)."""
    exclude = str(dups / "unlabeled_exclude.txt")
    both_splits = ((0, 6), (2, 8), (3, 16))  # (seed, copies a base): the val split of each is scored
    val, val2, val3 = (generated / f"seed{seed}" / "val" for seed, _ in both_splits)
    families, thumbnails, pairs_of_two, stamped = (generated / n for n in ("families", "thumbnails", "pairs", "marks"))
    no_potatoes = generated / "exclude_potatoes.txt"
    if make:
        for seed, n in both_splits:
            generated_val(generated / f"seed{seed}", seed, n)
        val_only(families, 5, 64)
        val_only(thumbnails, 9, 6, small_share=1.0)
        val_only(pairs_of_two, 11, 1)
        val_only(stamped, 14, 2, marks=3)
        no_potatoes.write_text("\n".join(str(p.relative_to(dups / "images")) for p in
                                         sorted((dups / "images" / "ugriffo_potatoes").rglob("*.png"))) + "\n")
    return {
        "dups strict": (dups / "images", str(dups / "ground_truth.json"), exclude, "copy"),
        "dups same-scene": (dups / "images", str(dups / "ground_truth_same_scene.json"), exclude, "scene"),
        "dups same-scene, no potato frames": (dups / "images", str(dups / "ground_truth_same_scene.json"),
                                              str(no_potatoes), "scene"),
        "generated val (copy)": (val / "images", str(val / "copy.json"), None, "copy"),
        "generated val (scene)": (val / "images", str(val / "scene.json"), None, "scene"),
        "generated val, seed 2, 8 copies (copy)": (val2 / "images", str(val2 / "copy.json"), None, "copy"),
        "generated val, seed 3, 16 copies (copy)": (val3 / "images", str(val3 / "copy.json"), None, "copy"),
        "generated val, seed 5, 64 copies (copy)": (families / "images", str(families / "copy.json"), None, "copy"),
        "generated val, thumbnails (copy)": (thumbnails / "images", str(thumbnails / "copy.json"), None, "copy"),
        "generated val, seed 11, 1 copy (copy)": (pairs_of_two / "images", str(pairs_of_two / "copy.json"), None,
                                                  "copy"),
        "generated val, seed 14, sellers' marks (copy)": (stamped / "images", str(stamped / "copy.json"), None,
                                                          "copy"),
    }


def main() -> None:
    dups = require_dups()
    generated = Path(tempfile.mkdtemp())
    try:
        collections = scored_collections(dups, generated)
        results = {}
        for images in {c[0] for c in collections.values()}:
            mine = [(name, truth, ex, level) for name, (imgs, truth, ex, level) in collections.items() if imgs == images]
            results.update(simsearch_rows(images, mine))
        for name, (images, truth, ex, _) in collections.items():
            results[name].update(imagededup_rows(images, truth, ex))
            results[name].update(immaculate_rows(images, truth, ex))
    finally:
        shutil.rmtree(generated)
    write("quality", {
        "note": "pair-level scores of groups, one scorer for all; simsearch at its defaults (level per truth, "
                "calibrated cut), its rules and imagededup at their best setting per collection, Immaculate "
                "at its defaults; generated val = copies.py val split (seed 0, 6 copies a base, unless named), "
                "never fitted on",
        "collections": results,
    })


if __name__ == "__main__":
    main()
