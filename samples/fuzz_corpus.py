"""A seeded corpus of damaged images: every format Pillow and pillow-heif write, each as one good file
and many mutants (truncated, bytes flipped, a range zeroed, the header scrambled, garbage appended,
chunks duplicated). Used by ``tests/test_fuzz.py`` (a few hundred files) and ``make fuzz``
(``benchmarks/fuzz.py``, thousands).

Usage: python samples/fuzz_corpus.py OUT [--per-format 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
# format -> (extension, save options)
FORMATS = {
    "JPEG": (".jpg", {"quality": 85}),
    "PNG": (".png", {}),
    "GIF": (".gif", {}),
    "WEBP": (".webp", {"quality": 80}),
    "TIFF": (".tif", {"compression": "tiff_deflate"}),
    "BMP": (".bmp", {}),
    "AVIF": (".avif", {"quality": 60}),
    "HEIF": (".heic", {"quality": 60}),
}


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = int(rng.integers(6))
    if kind == 0:  # truncated
        return bytes(buf[: int(rng.integers(1, len(buf)))])
    if kind == 1:  # a few bytes flipped
        for at in rng.integers(0, len(buf), int(rng.integers(1, 9))):
            buf[at] ^= int(rng.integers(1, 256))
    elif kind == 2:  # a range zeroed
        start = int(rng.integers(0, len(buf)))
        buf[start : start + int(rng.integers(1, 200))] = bytes(min(len(buf) - start, 200))
    elif kind == 3:  # the header scrambled
        for at in rng.integers(0, min(64, len(buf)), int(rng.integers(1, 6))):
            buf[at] = int(rng.integers(256))
    elif kind == 4:  # garbage appended
        buf += rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
    else:  # a chunk duplicated somewhere else
        start = int(rng.integers(0, len(buf)))
        chunk = buf[start : start + int(rng.integers(1, 512))]
        at = int(rng.integers(0, len(buf)))
        buf[at:at] = chunk
    return bytes(buf)


def _encoded(img: Image.Image, fmt: str, options: dict) -> bytes | None:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    try:
        img.save(out, fmt, **options)
    except (KeyError, OSError, ValueError):  # this build cannot write the format
        return None
    return out.getvalue()


def make_corpus(out: Path, per_format: int = 40, seed: int = 0) -> dict[str, list[Path]]:
    """Write the corpus under ``out``; returns {"good": [...], "mutant": [...]}."""
    rng = np.random.default_rng(seed)
    sources = sorted((HERE / "images").glob("*"))
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Path]] = {"good": [], "mutant": []}
    for n, (fmt, (ext, options)) in enumerate(FORMATS.items()):
        img = Image.open(sources[n % len(sources)]).convert("RGB").resize((96, 72))
        data = _encoded(img, fmt, options)
        if data is None:
            continue
        good = out / f"good_{fmt.lower()}{ext}"
        good.write_bytes(data)
        made["good"].append(good)
        for k in range(per_format):
            mutant = out / f"mutant_{fmt.lower()}_{k:04d}{ext}"
            mutant.write_bytes(_mutate(data, rng))
            made["mutant"].append(mutant)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--per-format", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    made = make_corpus(Path(opts.out), opts.per_format, opts.seed)
    print(f"{len(made['good'])} good files, {len(made['mutant'])} mutants in {opts.out}")


if __name__ == "__main__":
    main()
