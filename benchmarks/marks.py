"""Photos of different bases stamped with one seller's watermark: how many are taken for duplicates of each other.

A seller or agency stamps every photo with the same mark; verification then matches two different photos point
for point on the mark alone, with a transform that fits it exactly. The copy gate holds pairs whose inliers lie
on one small patch (``verify.Verification.spread``). Here one photo of every base of ``copies.py`` (the fit and
validation splits: 80 different pictures, none a copy of another) is stamped with one mark in a style the
calibration data never had, and each folder is indexed with embeddings: every pair ``duplicates`` decides, and
every pair its groups hold, is false. Styles: no mark (what remains without one), a name in the lower right
corner at a fourteenth of the height, the same at a tenth (a larger mark covers more of the picture, so its
inliers spread further), and a logo with a word in the upper right corner.

Usage: python benchmarks/marks.py
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import copies
from common import require_dups, write
from PIL import Image, ImageDraw, ImageFont

import simsearch
from simsearch import duplicates

STYLES = ("none", "name, 1/14 of the height", "name, 1/10 of the height", "logo")


def stamp(img: Image.Image, style: str) -> Image.Image:
    out = img.convert("RGB")
    w, h = out.size
    draw = ImageDraw.Draw(out)
    if style.startswith("name"):
        size = max(12, h // (14 if "1/14" in style else 10))
        draw.text((w - size * 8, h - size * 2), "(c) 2026 Rentals", font=ImageFont.load_default(size=size),
                  fill=(255, 255, 255), stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    elif style == "logo":
        side = max(24, min(w, h) // 5)
        mark = Image.new("RGBA", (side, side // 2), (20, 90, 200, 200))
        ImageDraw.Draw(mark).ellipse((2, 2, side // 2, side // 2 - 2), fill=(255, 255, 255, 230))
        ImageDraw.Draw(mark).text((side // 2 + 2, side // 8), "RENT", fill=(255, 255, 255, 255),
                                  font=ImageFont.load_default(size=max(8, side // 6)))
        base = out.convert("RGBA")
        base.alpha_composite(mark, (w - side - 4, 4))
        out = base.convert("RGB")
    return out


def bases() -> list[Path]:
    """One file of the first capture of every base of both splits."""
    return [unit["root"] / unit["captures"][0][0] for unit in copies.base_groups()]


def false_pairs(folder: Path, work: Path) -> dict:
    idx = simsearch.open_index(work / "ix", create=True)
    idx.add([folder], workers=2, embed="efficientnet_lite0")
    out = {}
    for level in ("copy", "scene"):
        decided = duplicates.decide(idx._reads, level)
        grouped = sum(len(g) * (len(g) - 1) // 2 for g in decided.groups())
        out[level] = {"pairs_decided": int(decided.decisions.matched().sum()), "pairs_in_groups": grouped,
                      "gated": int(decided.decisions.gated.sum())}
    idx.close()
    return out


def main() -> None:
    require_dups()
    photos = bases()
    results = {}
    for style in STYLES:
        work = Path(tempfile.mkdtemp())
        try:
            folder = work / "photos"
            folder.mkdir()
            for n, path in enumerate(photos):
                stamp(Image.open(path), style).save(folder / f"{n:03d}.jpg", quality=90)
            results[style] = false_pairs(folder, work)
        finally:
            shutil.rmtree(work)
        print(style, results[style], flush=True)
    write("marks", {"photos": len(photos), "pairs": len(list(itertools.combinations(photos, 2))),
                    "note": "every decided or grouped pair is false: no photo is a copy of another",
                    "styles": results})


if __name__ == "__main__":
    main()
