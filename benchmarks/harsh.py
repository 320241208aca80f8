"""Edits harsher than calibration ever drew, on bases the models were never fitted on.

``copies.py`` draws crops of up to 40 % cut away, JPEG down to quality 15, tilts of a few degrees and blur of a
few pixels; an unseen collection may hold worse (Copydays goes down to JPEG quality 3). Each base of the
validation split gets one copy for each of eight edits past those ranges, or past the issue's list:

- ``crop55``: 55 % of the area cut away; ``jpeg8``: JPEG at quality 8; ``tilt15``: turned 15 degrees and cropped;
- ``blur4``: Gaussian blur of radius 4; ``caption25``: a dark caption bar over the bottom quarter, the same text
  on every photo (as a seller's banner); ``tiny96``: shrunk to 96 pixels on its long side;
- ``crop30_grey_q30``: 30 % cut away, grey, JPEG quality 30; ``mirror_border20``: mirrored, with a white border
  a fifth of its long side.

The bases are the validation units of ``copies.py``: photos, and runs of consecutive video frames of one potato
(each frame its own capture, so a frame's copies are copies and the other frames are not). Reported: simsearch
at its defaults (level copy) and Immaculate at its defaults, pair-level scores of the groups on the whole
collection and on the photos alone (the video frames left out of the scoring), and simsearch's rate of copies
decided duplicates of their base per edit, for photos and for video frames apart. ``--extreme`` makes the copies
with edits past those again (``EXTREME``: 70 and 80 % cut away, JPEG q3 and q5, 25-degree tilts, blur radius 8,
48-pixel thumbnails, a half cut away in grey at JPEG q10).

Usage: python benchmarks/harsh.py [--extreme]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import copies
from common import decided_pairs, require_dups, write
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from quality import immaculate_rows, row

import simsearch
from simsearch.evaluate import evaluate

SEED = 7


def _cut(img: Image.Image, rng: random.Random, keep: float) -> Image.Image:
    """A crop keeping ``keep`` of the area, at a random place."""
    side = keep**0.5
    w, h = round(img.width * side), round(img.height * side)
    x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
    return img.crop((x, y, x + w, y + h))


def _tilt(img: Image.Image, degrees: float) -> Image.Image:
    turned = img.rotate(degrees, resample=Image.Resampling.BICUBIC)
    m = 0.18  # the corners the turn leaves empty, cut away
    return turned.crop((round(img.width * m), round(img.height * m), round(img.width * (1 - m)),
                        round(img.height * (1 - m))))


def _caption(img: Image.Image) -> Image.Image:
    img = img.copy()
    draw = ImageDraw.Draw(img)
    top = round(img.height * 0.75)
    draw.rectangle((0, top, img.width, img.height), fill=(20, 20, 20))
    draw.text((8, top + 4), "SALE! Call 555 0123 today. " * 3, fill=(255, 230, 0))
    return img


def _mirror_border(img: Image.Image) -> Image.Image:
    return ImageOps.expand(ImageOps.mirror(img), border=round(0.2 * max(img.size)), fill=(255, 255, 255))


# name -> (edit, JPEG quality of the saved copy)
HARSH = {
    "crop55": (lambda img, rng: _cut(img, rng, 0.45), 85),
    "jpeg8": (lambda img, rng: img, 8),
    "tilt15": (lambda img, rng: _tilt(img, 15.0), 85),
    "blur4": (lambda img, rng: img.filter(ImageFilter.GaussianBlur(4)), 85),
    "caption25": (lambda img, rng: _caption(img), 85),
    "tiny96": (lambda img, rng: ImageOps.contain(img, (96, 96)), 85),
    "crop30_grey_q30": (lambda img, rng: _cut(img, rng, 0.7).convert("L"), 30),
    "mirror_border20": (lambda img, rng: _mirror_border(img), 85),
}


# ``--extreme``: past the harsh ones (Copydays' strongest crops and JPEG qualities, and beyond)
EXTREME = {
    "crop70": (lambda img, rng: _cut(img, rng, 0.30), 85),
    "crop80": (lambda img, rng: _cut(img, rng, 0.20), 85),
    "jpeg3": (lambda img, rng: img, 3),
    "jpeg5": (lambda img, rng: img, 5),
    "tilt25": (lambda img, rng: _tilt(img, 25.0), 85),
    "blur8": (lambda img, rng: img.filter(ImageFilter.GaussianBlur(8)), 85),
    "tiny48": (lambda img, rng: ImageOps.contain(img, (48, 48)), 85),
    "crop50_grey_q10": (lambda img, rng: _cut(img, rng, 0.5).convert("L"), 10),
}


def make(folder: Path, edits: dict) -> tuple[dict[str, tuple[str, str, str]], list[str]]:
    """The bases (``copies.write_split`` with no copies of its own) and their harsh copies, with the truth
    rewritten to hold them. Returns each copy's (edit, base, source) and the video frames' names."""
    units = [{**u, "copies": 0} for u in copies.base_groups() if copies.split_of(u["key"]) == "val"]
    rng = random.Random(SEED)
    copies.write_split(units, folder, rng, 0)
    truth = json.loads((folder / "copy.json").read_text())
    made, frames = {}, []
    for n, unit in enumerate(units):
        for c, members in enumerate(unit["captures"]):
            names = [f"u{n:03d}c{c}_{Path(m).name}" for m in members]
            if unit["source"] == "bursts":
                frames += names
            base = Image.open(folder / "images" / names[0]).convert("RGB")
            for kind, (edit, quality) in edits.items():
                name = f"u{n:03d}c{c}_{kind}.jpg"
                edit(base, rng).save(folder / "images" / name, quality=quality)
                made[name] = (kind, names[0], unit["source"])
                if unit["source"] == "bursts":
                    frames.append(name)
            family = names + [f"u{n:03d}c{c}_{kind}.jpg" for kind in edits]
            for name in family:
                truth[name] = sorted(o for o in family if o != name)
    (folder / "copy.json").write_text(json.dumps(truth, indent=1))
    return made, frames


def decided_by_edit(idx, made: dict[str, tuple[str, str, str]], edits: dict) -> dict:
    """Per edit, for photos and for video frames: copies decided duplicates of their base (calibrated, level copy)."""
    matched = decided_pairs(idx)
    done, total = Counter(), Counter()
    for name, (kind, base, source) in made.items():
        key = (kind, "video frames" if source == "bursts" else "photos")
        total[key] += 1
        done[key] += frozenset((name, base)) in matched
    return {kind: {side: f"{done[(kind, side)]} of {total[(kind, side)]}" for side in ("photos", "video frames")}
            for kind in edits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extreme", action="store_true", help="the EXTREME edits instead (results: harsh_extreme)")
    extreme = parser.parse_args().extreme
    edits = EXTREME if extreme else HARSH
    require_dups()
    work = Path(tempfile.mkdtemp())
    try:
        folder = work / "harsh"
        made, frames = make(folder, edits)
        images, truth = folder / "images", str(folder / "copy.json")
        exclude = work / "video_frames.txt"
        exclude.write_text("\n".join(frames) + "\n")
        idx = simsearch.open_index(work / "ix", create=True)
        idx.add([images], workers=2, embed="efficientnet_lite0")
        result = {"images": sum(1 for _ in images.iterdir()), "copies": len(made),
                  "decided_duplicate_of_base": decided_by_edit(idx, made, edits)}
        for name, left_out in (("whole collection", None), ("photos alone", str(exclude))):
            default = next(s for s in evaluate(idx, truth, exclude=left_out, level="copy") if s.default)
            result[name] = {"simsearch (default)": row(default), **immaculate_rows(images, truth, left_out)}
        idx.close()
    finally:
        shutil.rmtree(work)
    write("harsh_extreme" if extreme else "harsh",
          {"note": "edits past calibration's ranges (see the docstring) on the validation bases; level copy, "
                   "pair-level scores of the groups; Immaculate at its defaults", "edits": list(edits), **result})


if __name__ == "__main__":
    main()
