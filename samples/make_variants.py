"""Write edited variants of the sample images into a folder (demo and tests).

Usage: python samples/make_variants.py DIR   (DIR holds the sample images)
Returns, from ``make_variants``, the map {variant: original} of what it wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def make_variants(folder: Path) -> dict[str, str]:
    folder = Path(folder)
    made: dict[str, str] = {}
    originals = {"chelsea.png": "chelsea", "coffee.png": "coffee", "rocket.jpg": "rocket"}
    for name, stem in originals.items():
        img = Image.open(folder / name).convert("RGB")
        w, h = img.size
        edits = {
            f"edits/{stem}_q70.jpg": (img, {"quality": 70}),
            f"edits/{stem}_half.png": (img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), {}),
            f"edits/{stem}_crop.jpg": (img.crop((w // 20, h // 20, w - w // 20, h - h // 20)), {"quality": 90}),
            f"edits/{stem}_grey.png": (ImageOps.grayscale(img), {}),
            f"edits/{stem}.webp": (img, {"lossless": True}),
        }
        for rel, (variant, kw) in edits.items():
            (folder / rel).parent.mkdir(exist_ok=True)
            variant.save(folder / rel, **kw)
            made[rel] = name
    chelsea = Image.open(folder / "chelsea.png").convert("RGB")
    specials = {
        "modes/chelsea_rgba.png": chelsea.convert("RGBA"),
        "modes/chelsea_cmyk.jpg": chelsea.convert("CMYK"),
        "modes/chelsea_palette.png": chelsea.convert("P", palette=Image.Palette.ADAPTIVE),
        "modes/chelsea_16bit.png": Image.fromarray(np.asarray(chelsea.convert("L"), np.uint16) * 257),
        "modes/chelsea_exact_copy.png": chelsea,
    }
    for rel, variant in specials.items():
        (folder / rel).parent.mkdir(exist_ok=True)
        variant.save(folder / rel)
        made[rel] = "chelsea.png"
    frames = [chelsea.resize((200, 150)), ImageOps.invert(chelsea.resize((200, 150)))]
    frames[0].save(folder / "modes/chelsea_animated.gif", save_all=True, append_images=frames[1:], duration=100)
    made["modes/chelsea_animated.gif"] = "chelsea.png"
    return made


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_variants.py DIR")
    print(f"wrote {len(make_variants(Path(sys.argv[1])))} variants")
