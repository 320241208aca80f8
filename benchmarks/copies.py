"""Edited-copy collections for calibrating and validating duplicate decisions, made reproducibly.

From base images (the ``dups`` development set and ``samples/``) it writes, for every base, a few
copies made by random combinations of the edits a marketplace sees on re-uploaded photos: resize,
recompression, format change, crop (up to 40 % cut away), rotation by 90/180/270, mirror, tilt of
a few degrees, borders, text and logo overlays, colour, brightness, grey, blur, noise and aspect
change. Strengths are random, drawn from one seed.

With ``--small-share``, that share of the bases is first shrunk to a thumbnail of 120 to 400 pixels on
its long side, with its copies made from that (small photos show verification few keypoints). The
calibration data has none: fitted with a quarter of them, the models lost precision on both kinds of
base (see README, Duplicate quality); ``quality.py`` measures the thumbnails instead.

With ``--marks N``, each base also gets one copy stamped with one of N sellers' marks (a watermark: a name or
web address, or a logo, at one place and scale on every photo the seller stamps), saved as a JPEG. A stamped
copy is a copy of its base; two stamped photos of different bases are not copies, though their marks match point
for point: the case the verified models must learn to refuse (the calibration makes 2 marks).

Bases are split into ``fit`` and ``val`` by group: a base's own near-duplicates and its
same-scene shots (per ``dups``' groups.json) always land on the same side, so no picture
appears on both sides. ``../shared/data/holdout/`` is never read here.

Each split is written as ``OUT/<split>/images/...`` with imagededup-format ground truth:
``copy.json`` (same capture: the base, its edits and the base's own strict duplicates) and
``scene.json`` (also the base's same-scene shots), plus ``edits.json`` describing every copy.

Usage: python benchmarks/copies.py OUT [--seed 0] [--copies 4] [--small-share 0] [--marks 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

REPO = Path(__file__).resolve().parent.parent
DUPS = REPO.parent / "shared" / "data" / "dups"
VAL_FRACTION = 0.4
BURST_RUN, BURST_UNITS = 10, 6  # runs of consecutive video frames taken as burst units, and how many
SMALL_SIDES = (120, 400)  # long side of a base shrunk to a thumbnail, in pixels
WORDS = ("SALE", "Sea view", "www.example.com", "© 2026 Rentals", "NEW", "Room 12", "Best price", "Tel 555 0101")


# -- edits: each takes (image, rng) and returns (image, description) ------------------------------
def resize(img, rng):
    s = rng.uniform(0.3, 0.9)
    return img.resize((max(16, round(img.width * s)), max(16, round(img.height * s))), Image.Resampling.LANCZOS), \
        f"resize x{s:.2f}"


def crop(img, rng):
    keep = rng.uniform(0.6, 0.95)  # of the area
    ar = rng.uniform(0.8, 1.25)
    w = min(img.width, round(img.width * (keep * ar) ** 0.5))
    h = min(img.height, round(img.height * (keep / ar) ** 0.5))
    x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
    return img.crop((x, y, x + w, y + h)), f"crop {1 - w * h / (img.width * img.height):.0%} cut"


def rotate90(img, rng):
    k = rng.choice((90, 180, 270))
    return img.rotate(k, expand=True), f"rotate {k}"


def mirror(img, rng):
    if rng.random() < 0.7:
        return ImageOps.mirror(img), "mirror"
    return ImageOps.flip(img), "flip vertical"


def tilt(img, rng):
    angle = rng.choice((-1, 1)) * rng.uniform(2, 10)
    if rng.random() < 0.5:
        return img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255)), \
            f"tilt {angle:.1f} deg, white corners"
    out = img.rotate(angle, resample=Image.Resampling.BICUBIC)
    m = 0.12
    return out.crop((round(out.width * m), round(out.height * m), round(out.width * (1 - m)),
                     round(out.height * (1 - m)))), f"tilt {angle:.1f} deg, cropped"


def border(img, rng):
    frac = rng.uniform(0.03, 0.15)
    colour = rng.choice(((255, 255, 255), (0, 0, 0), (200, 30, 30), (240, 240, 220)))
    pad = (round(img.width * frac), round(img.height * frac * rng.uniform(0.5, 1.5)))
    return ImageOps.expand(img, border=(pad[0], pad[1], pad[0], pad[1]), fill=colour), f"border {frac:.0%}"


def text(img, rng):
    out = img.copy()
    draw = ImageDraw.Draw(out)
    for _ in range(rng.randint(1, 3)):
        size = max(10, round(min(img.size) * rng.uniform(0.05, 0.14)))
        font = ImageFont.load_default(size=size)
        word = rng.choice(WORDS)
        x, y = rng.randint(0, max(1, img.width - size * len(word) // 2)), rng.randint(0, max(1, img.height - size))
        draw.text((x, y), word, font=font, fill=rng.choice(((255, 255, 255), (0, 0, 0), (255, 210, 0))),
                  stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return out, "text overlay"


def logo(img, rng):
    out = img.convert("RGBA")
    side = max(12, round(min(img.size) * rng.uniform(0.12, 0.3)))
    mark = Image.new("RGBA", (side, side // 2), (*rng.choice(((20, 90, 200), (220, 220, 220), (0, 0, 0))), 170))
    ImageDraw.Draw(mark).ellipse((2, 2, side // 2, side // 2 - 2), fill=(255, 255, 255, 220))
    corner = rng.choice(((0, 0), (1, 0), (0, 1), (1, 1)))
    pos = (corner[0] * (img.width - mark.width), corner[1] * (img.height - mark.height))
    out.alpha_composite(mark, pos)
    return out.convert("RGB"), "logo overlay"


def colour(img, rng):
    out = ImageEnhance.Brightness(img).enhance(rng.uniform(0.65, 1.35))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.65, 1.35))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.0, 1.7))
    return out, "colour, brightness, contrast"


def grey(img, rng):
    return ImageOps.grayscale(img).convert("RGB"), "grey"


def blur(img, rng):
    r = rng.uniform(0.8, 2.5)
    return img.filter(ImageFilter.GaussianBlur(r)), f"blur {r:.1f}"


def noise(img, rng):
    import numpy as np  # noqa: PLC0415

    sigma = rng.uniform(3, 12)
    arr = np.asarray(img, dtype=np.float32)
    noisy = arr + np.random.default_rng(rng.randint(0, 2**31)).normal(0, sigma, arr.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), f"noise {sigma:.0f}"


def aspect(img, rng):
    s = rng.choice((-1, 1)) * rng.uniform(0.12, 0.35)
    w, h = (round(img.width * (1 + s)), img.height) if rng.random() < 0.5 else (img.width, round(img.height * (1 + s)))
    return img.resize((max(16, w), max(16, h)), Image.Resampling.BICUBIC), f"aspect {s:+.0%}"


EDITS = (resize, crop, rotate90, mirror, tilt, border, text, logo, colour, grey, blur, noise, aspect)
FORMATS = (("jpg", "JPEG"), ("webp", "WEBP"), ("png", "PNG"))
SELLERS = ("© Sunny Homes", "www.example-rentals.com", "AGENCY 24", "Photo: J. Smith", "citylets.example")


def seller_mark(rng: random.Random) -> dict:
    """One seller's mark: what it says (or a logo), where it goes, its size against the image's width, its colour."""
    return {"text": rng.choice(SELLERS), "logo": rng.random() < 0.3, "corner": rng.choice(((0, 0), (1, 0), (0, 1), (1, 1),
            (0.5, 1))), "scale": rng.uniform(0.03, 0.06), "fill": rng.choice(((255, 255, 255), (0, 0, 0), (255, 210, 0))),
            "alpha": rng.choice((255, 160))}


def stamp(img: Image.Image, mark: dict) -> Image.Image:
    """``img`` with ``mark`` drawn on it, scaled to the image's width as watermarking tools do."""
    out = img.convert("RGBA")
    size = max(10, round(img.width * mark["scale"]))
    font = ImageFont.load_default(size=size)
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    box = draw.textbbox((0, 0), mark["text"], font=font, stroke_width=max(1, size // 12))
    logo = size * 2 if mark["logo"] else 0  # a disc before the text, this wide
    w, h = box[2] + logo, max(box[3], logo)
    x = round(mark["corner"][0] * (img.width - w - 2 * size)) + size
    y = round(mark["corner"][1] * (img.height - h - 2 * size)) + size
    if logo:
        draw.ellipse((x, y, x + logo - 4, y + logo - 4), fill=(*mark["fill"], mark["alpha"]),
                     outline=(0, 0, 0, mark["alpha"]), width=max(1, size // 8))
    draw.text((x + logo, y), mark["text"], font=font, fill=(*mark["fill"], mark["alpha"]),
              stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0, mark["alpha"]))
    out.alpha_composite(layer)
    return out.convert("RGB")


def edited_copy(img: Image.Image, rng: random.Random) -> tuple[Image.Image, list[str], tuple[str, dict]]:
    """A random combination of 1 to 3 edits, and how to save it (extension and save options)."""
    steps = []
    out = img.convert("RGB")
    for edit in rng.sample(EDITS, rng.choice((1, 1, 2, 2, 3))):
        out, what = edit(out, rng)
        steps.append(what)
    ext, fmt = rng.choices(FORMATS, weights=(6, 2, 2))[0]
    options = {"quality": rng.randint(15, 90)} if fmt in ("JPEG", "WEBP") else {}
    if options:
        steps.append(f"{fmt} q{options['quality']}")
    return out, steps, (ext, {"format": fmt, **options})


# -- bases and splits ---------------------------------------------------------------------------
def base_groups() -> list[dict]:
    """Groups of base images: each strict group (its members share one capture), each singleton,
    each same-scene group (its strict groups and singletons joined), from dups and samples/."""
    groups = json.loads((DUPS / "groups.json").read_text())
    excluded = set((DUPS / "unlabeled_exclude.txt").read_text().split())
    images = sorted(str(p.relative_to(DUPS / "images")) for p in (DUPS / "images").rglob("*") if p.is_file())
    parent = {p: p for p in images}

    def find(p):
        while parent[p] != p:
            p = parent[p]
        return p

    captures = defaultdict(set)  # capture id -> members (strict groups)
    for g in groups:
        if g["level"] == "strict":
            for m in g["members"][1:]:
                parent[find(m)] = find(g["members"][0])
    for p in images:
        if p not in excluded:
            captures[find(p)].add(p)
    scene_of = {}
    for g in groups:
        if g["level"] == "same_scene":
            caps = {find(m) for m in g["members"]}
            for c in caps:
                scene_of[c] = min(caps)
    units = defaultdict(list)
    for cap, members in captures.items():
        if any("potatoes" in m for m in members):
            continue  # video frames of one potato: one capture each, but no labels for the frames between
        units[scene_of.get(cap, cap)].append(sorted(members))
    out = [{"key": k, "source": "dups", "captures": v, "root": DUPS / "images"} for k, v in sorted(units.items())]
    out.extend(burst_units())
    in_dups = {hashlib.sha256((DUPS / "images" / p).read_bytes()).hexdigest() for p in images}
    for p in sorted((REPO / "samples" / "images").iterdir()):
        if hashlib.sha256(p.read_bytes()).hexdigest() not in in_dups:  # one picture is one base
            out.append({"key": f"samples/{p.name}", "source": "samples", "captures": [[p.name]],
                        "root": REPO / "samples" / "images"})
    return out


def burst_units() -> list[dict]:
    """Runs of consecutive video frames (the potatoes): near-identical, but each frame its own capture,
    so copies of one frame are copies and the other frames only the same scene. The labelled frames of
    ``dups`` and their neighbours are left out, so its evaluation does not meet them here."""
    folder = DUPS / "images" / "ugriffo_potatoes" / "potatoes"
    labelled = {p.name for p in (DUPS / "images" / "ugriffo_potatoes").glob("potatoes_multi_folder/*/*.png")}
    frames = sorted(p.name for p in folder.glob("*.png"))
    near = {frames[k] for k, f in enumerate(frames) if any(f2 in labelled for f2 in frames[max(0, k - 3): k + 4])}
    free = [f for f in frames if f not in near]
    units = []
    for start in range(0, len(free) - BURST_RUN, 5 * BURST_RUN)[:BURST_UNITS]:
        run = free[start : start + BURST_RUN]
        units.append({"key": f"burst/{run[0]}", "source": "bursts", "captures": [[f] for f in run],
                      "root": folder, "copies": 1})
    return units


def split_of(key: str) -> str:
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return "val" if digest / 0xFFFFFFFF < VAL_FRACTION else "fit"


def thumbnail(source: Path, target: Path, side: int) -> None:
    """``source`` shrunk to ``side`` pixels on its long side (never enlarged), saved as its name says."""
    with Image.open(source) as img:
        img = ImageOps.exif_transpose(img)
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
        if target.suffix.lower() in (".jpg", ".jpeg"):
            img.convert("RGB").save(target, quality=90)
        else:
            img.save(target)


def write_split(units: list[dict], out: Path, rng: random.Random, copies: int, small_share: float = 0.0,
                marks: int = 0) -> dict:
    """Each unit's files and their edited copies, with the ground truth; a unit drawn small (``small_share``,
    no draw at 0) has its files shrunk to thumbnails first. With ``marks``, each base also gets a copy stamped
    with one of that many sellers' marks, drawn from a generator of their own (``rng``'s draws stay as they
    were, so the other copies are those made without marks)."""
    mark_rng = random.Random(repr(rng.getstate()))  # seeded by ``rng`` without drawing from it
    sellers = [seller_mark(mark_rng) for _ in range(marks)]
    images = out / "images"
    images.mkdir(parents=True)
    copy_sets, scene_sets, edits = [], [], {}
    for n, unit in enumerate(units):
        scene = []
        side = rng.randint(*SMALL_SIDES) if small_share and rng.random() < small_share else None
        for c, members in enumerate(unit["captures"]):
            names = []
            for m in members:
                name = f"u{n:03d}c{c}_{Path(m).name}"
                if side is None:
                    shutil.copy(unit["root"] / m, images / name)
                else:
                    thumbnail(unit["root"] / m, images / name, side)
                names.append(name)
            base = Image.open(images / names[0])
            base.load()
            for k in range(unit.get("copies", copies)):
                img, steps, (ext, options) = edited_copy(base, rng)
                name = f"u{n:03d}c{c}_edit{k}.{ext}"
                img.save(images / name, **options)
                edits[name] = {"base": names[0], "edits": steps}
                names.append(name)
            if sellers and c == 0:  # one stamped copy of each unit's first capture
                mark, quality = mark_rng.choice(sellers), mark_rng.randint(60, 95)
                name = f"u{n:03d}c{c}_mark.jpg"
                stamp(base, mark).save(images / name, quality=quality)
                edits[name] = {"base": names[0], "edits": [f"watermark {mark['text']!r}", f"JPEG q{quality}"]}
                names.append(name)
            copy_sets.append(names)
            scene.extend(names)
        scene_sets.append(scene)
    all_names = sorted(p.name for p in images.iterdir())
    for label, sets in (("copy", copy_sets), ("scene", scene_sets)):
        truth = {name: [] for name in all_names}
        for group in sets:
            for name in group:
                truth[name] = sorted(o for o in group if o != name)
        (out / f"{label}.json").write_text(json.dumps(truth, indent=1))
    (out / "edits.json").write_text(json.dumps(edits, indent=1))
    return {"units": len(units), "images": len(all_names), "copies": len(edits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies", type=int, default=4, help="edited copies per base")
    parser.add_argument("--small-share", type=float, default=0.0, help="share of bases shrunk to thumbnails")
    parser.add_argument("--marks", type=int, default=0, help="sellers' marks, each base stamped with one")
    opts = parser.parse_args()
    if not (DUPS / "groups.json").exists():
        raise SystemExit(f"SKIPPED: {DUPS} is absent (the development data set lives in ../shared/data)")
    out = Path(opts.out)
    if out.exists():
        shutil.rmtree(out)
    rng = random.Random(opts.seed)
    units = base_groups()
    summary = {}
    for split in ("fit", "val"):
        chosen = [u for u in units if split_of(u["key"]) == split]
        summary[split] = write_split(chosen, out / split, rng, opts.copies, opts.small_share, opts.marks)
    summary["seed"], summary["copies_per_base"] = opts.seed, opts.copies
    if opts.small_share:
        summary["small_share"] = opts.small_share
    if opts.marks:
        summary["marks"] = opts.marks
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
