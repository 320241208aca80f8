"""Hashing throughput: `simsearch index` against imagededup's PHash().encode_images,
same folder, same number of cores, each timed after one warm-up run (page cache hot).

Usage: python benchmarks/hash_throughput.py [FOLDER] [--workers N]
Default: two folders, ../shared/data/dups/images (mostly small PNGs) and 480
generated 1024x768 JPEG photos made from the bundled sample images.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, require_dups, write


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})


def time_simsearch(folder: Path, workers: int) -> float:
    tmp = Path(tempfile.mkdtemp())
    try:
        cmd = [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(tmp / "ix"),
               "--workers", str(workers), "--no-progress"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(tmp)


def time_imagededup(folder: Path, workers: int) -> float:
    code = ("import sys, time; from imagededup.methods import PHash; t=time.perf_counter(); "
            f"PHash(verbose=False).encode_images(image_dir=sys.argv[1], recursive=True, num_enc_workers={workers}); "
            "print(time.perf_counter()-t)")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True)
    return time.perf_counter() - start


def make_photos(folder: Path, count: int = 480) -> Path:
    """1024x768 JPEGs: crops, flips and qualities of the bundled samples (seeded, reproducible).
    Made in parallel on every core (each photo depends only on its number)."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_make_photo, [folder] * count, range(count), chunksize=16))
    return folder


def _make_photo(folder: Path, n: int) -> None:
    from PIL import Image, ImageOps

    sources = sorted((REPO / "samples" / "images").iterdir())
    with Image.open(sources[n % len(sources)]) as source:
        img = source.convert("RGB")
    k = n // len(sources)
    w, h = img.size
    c, d = k % 20, k // 100  # crop, mirror and quality repeat every 100: the inset d keeps every photo distinct
    img = img.crop((c, c, w - c - d, h - c - d)).resize((1024, 768))
    (ImageOps.mirror(img) if k % 2 else img).save(folder / f"photo_{n:04d}.jpg", quality=70 + k % 25)


def measure(folder: Path, workers: int, repeats: int) -> dict:
    n = count_images(folder)
    time_simsearch(folder, workers), time_imagededup(folder, workers)  # warm-up
    ours = min(time_simsearch(folder, workers) for _ in range(repeats))
    theirs = min(time_imagededup(folder, workers) for _ in range(repeats))
    return {"folder": str(folder), "images": n, "simsearch_seconds": round(ours, 3),
            "simsearch_img_per_s": round(n / ours, 1), "imagededup_seconds": round(theirs, 3),
            "imagededup_img_per_s": round(n / theirs, 1), "ratio": round(theirs / ours, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.folder:
        folders = [Path(args.folder)]
    else:
        folders = [require_dups() / "images", make_photos(Path(tempfile.mkdtemp()) / "photos_1024x768")]
    write("hash_throughput", {
        "workers": args.workers,
        "note": "wall time of the whole command, best of repeats after a warm-up: simsearch index (process start, "
                "scan, decode, 4 hashes, byte and pixel digests, SQLite writes) against imagededup "
                "PHash().encode_images (process start with its torch import, decode, 1 hash)",
        "runs": [measure(folder, args.workers, args.repeats) for folder in folders],
    })

if __name__ == "__main__":
    main()
