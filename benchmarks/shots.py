"""Other shots of one scene that fit one transform as a copy does: overlapping views, a camera turned a little.

Each photo base of ``copies.py`` (dups and samples, both splits: these shots are no calibration data) gives two
shots: its left and its right part, each ``share`` of its width, seen through a camera turned 3 to 8 degrees
(a homography, opposite ways), at another exposure; the left shot also gets one edited copy (``copies.py``'s
edits). The truth at level copy: each shot with its copies, the two shots apart (another photo of the scene, as
a panorama's frames or a burst with a moved camera are); at level scene: all three together. Two shares: 70 %
(the shots share about 57 % of each) and 85 % (about 82 %).

Reported per share: the shot pairs simsearch decides copies (calibrated, level copy), the edited copies it
decides copies of their shot, pair-level scores of the groups at level copy against Immaculate at its defaults,
and at level scene.

Usage: python benchmarks/shots.py
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
from pathlib import Path

import copies
import cv2
import numpy as np
from common import decided_pairs, require_dups, write
from PIL import Image, ImageEnhance
from quality import immaculate_rows, row

import simsearch
from simsearch.evaluate import evaluate

SEED = 12
SHARES = (0.7, 0.85)
MIN_WIDTH = 400  # narrower bases leave too little to turn


def shot(img: Image.Image, left: bool, share: float, turn: float, light: float) -> Image.Image:
    """The left or right ``share`` of ``img``'s width, seen through a camera turned by ``turn`` degrees, its
    brightness times ``light``."""
    pixels = np.asarray(img.convert("RGB"))
    width = round(pixels.shape[1] * share)
    window = np.ascontiguousarray(pixels[:, :width] if left else pixels[:, -width:])
    h, w = window.shape[:2]
    camera = np.array([[1.2 * w, 0, w / 2], [0, 1.2 * w, h / 2], [0, 0, 1]])
    a = math.radians(turn)
    turned = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    view = camera @ turned @ np.linalg.inv(camera)
    centre = view @ np.array([w / 2, h / 2, 1.0])
    # the turn's perspective about the window's centre, without the shift a turn also makes (which would bring
    # in what lies beyond the window, and could undo the two windows' offset)
    view = np.array([[1, 0, w / 2 - centre[0] / centre[2]], [0, 1, h / 2 - centre[1] / centre[2]], [0, 0, 1]]) @ view
    warped = cv2.warpPerspective(window, view, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    m = 0.04  # the reflected corners the perspective brings in, cut away
    out = Image.fromarray(warped).crop((round(w * m), round(h * m), round(w * (1 - m)), round(h * (1 - m))))
    return ImageEnhance.Brightness(out).enhance(light)


def make(folder: Path, share: float) -> dict[str, str]:
    """The shots and copies, with the truth at both levels; returns each shot pair (left -> right)."""
    rng = random.Random(f"{SEED}-{share}")
    images = folder / "images"
    images.mkdir(parents=True)
    copy_sets, scene_sets, pairs = [], [], {}
    for n, unit in enumerate(u for u in copies.base_groups() if u["source"] != "bursts"):
        base = Image.open(unit["root"] / unit["captures"][0][0]).convert("RGB")
        if base.width < MIN_WIDTH:
            continue
        turn = rng.uniform(3, 8)
        left, right = f"u{n:03d}_left.jpg", f"u{n:03d}_right.jpg"
        shot(base, True, share, turn, rng.uniform(0.85, 1.15)).save(images / left, quality=90)
        shot(base, False, share, -turn, rng.uniform(0.85, 1.15)).save(images / right, quality=90)
        edited, _, (ext, options) = copies.edited_copy(Image.open(images / left), rng)
        edited.save(images / f"u{n:03d}_left_edit.{ext}", **options)
        copy_sets += [[left, f"u{n:03d}_left_edit.{ext}"], [right]]
        scene_sets.append([left, f"u{n:03d}_left_edit.{ext}", right])
        pairs[left] = right
    for label, sets in (("copy", copy_sets), ("scene", scene_sets)):
        truth = {name: sorted(o for o in group if o != name) for group in sets for name in group}
        (folder / f"{label}.json").write_text(json.dumps(truth, indent=1))
    return pairs


def decided(idx, images: Path, pairs: dict[str, str]) -> dict:
    """The shot pairs decided copies, and the edited copies decided copies of their shot (level copy)."""
    matched = decided_pairs(idx)
    edits = {p.name: p.name.split("_edit")[0] + ".jpg" for p in images.iterdir() if "_edit" in p.name}
    return {"shot_pairs_decided_copies": f"{sum(frozenset(p) in matched for p in pairs.items())} of {len(pairs)}",
            "edited_copies_decided_copies": f"{sum(frozenset(p) in matched for p in edits.items())} of {len(edits)}"}


def main() -> None:
    require_dups()
    result = {}
    for share in SHARES:
        work = Path(tempfile.mkdtemp())
        try:
            folder = work / "shots"
            pairs = make(folder, share)
            images = folder / "images"
            idx = simsearch.open_index(work / "ix", create=True)
            idx.add([images], workers=2, embed="efficientnet_lite0")
            out = {"images": sum(1 for _ in images.iterdir()), **decided(idx, images, pairs)}
            for level in ("copy", "scene"):
                truth = str(folder / f"{level}.json")
                default = next(s for s in evaluate(idx, truth, level=level) if s.default)
                out[f"level {level}"] = {"simsearch (default)": row(default),
                                         **(immaculate_rows(images, truth, None) if level == "copy" else {})}
            idx.close()
        finally:
            shutil.rmtree(work)
        result[f"share {share}"] = out
        print(share, json.dumps(out))
    write("shots", {"note": "two overlapping shots of each photo base (a camera turned 3 to 8 degrees) and an edited "
                            "copy of one: at level copy the shots are apart, at level scene together",
                    "seed": SEED, **result})


if __name__ == "__main__":
    main()
