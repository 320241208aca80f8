"""Where the time of `simsearch index DIR` (hashes only) plus `simsearch duplicates --format json` goes,
at two sizes, beside Immaculate's default run (PDQ, one core) on the same folder in the same run.

The folders are generated (seeded): photos made from the bundled samples and the `dups` images, resized
to 1024 px on the long side with random crops and colour changes, saved mostly as JPEG with some PNG
and WebP. For each size:
- whole commands, wall time and peak memory (`/usr/bin/time`), best of 3 after a warm-up; `duplicates`
  as a first run (the verifications and candidate pairs kept by the run before removed) and as a later run
  (kept);
- the per-file stages measured in one process over every file (read, SHA-256, decode with the pixel
  digest, the four hashes with the rotation pHashes), the database writes, and the start-up of an
  empty command (interpreter and imports).

Usage: python benchmarks/stages.py [--sizes 400 5000]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DUPS, REPO, write
from PIL import Image, ImageEnhance

PEER = REPO / ".venv-peers" / "bin" / "immaculate"


def make_folder(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sources = sorted((REPO / "samples" / "images").glob("*"))
    if (DUPS / "images").is_dir():
        sources += sorted(p for p in (DUPS / "images").rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    folder.mkdir(parents=True)
    for k in range(n):
        img = Image.open(sources[k % len(sources)]).convert("RGB")
        w, h = img.size
        cut = rng.uniform(0, 0.15, 4)
        img = img.crop((int(w * cut[0]), int(h * cut[1]), w - int(w * cut[2]), h - int(h * cut[3])))
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
        scale = 1024 / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        kind = rng.choice(["jpg"] * 8 + ["png", "webp"])
        img.save(folder / f"p{k:05d}.{kind}", **({"quality": 88} if kind != "png" else {}))


def timed(cmd: list[str], repeats: int = 3) -> dict:
    """Best wall time of ``repeats`` runs after a warm-up, with the peak memory of that run."""
    best = None
    for attempt in range(repeats + 1):
        done = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, check=True)
        wall, kb = done.stderr.strip().splitlines()[-1].split()
        if attempt and (best is None or float(wall) < best[0]):
            best = (float(wall), int(kb) / 1024)
    return {"seconds": best[0], "peak_mb": round(best[1])}


def simsearch_commands(folder: Path, work: Path) -> dict:
    index = work / "ix"
    run = [sys.executable, "-m", "simsearch.cli"]
    index_cmd = ["sh", "-c", f"rm -rf {index} && {' '.join(run)} index {folder} --index {index} --no-progress "
                             "> /dev/null"]
    out = {"index": timed(index_cmd)}
    duplicates = f"{' '.join(run)} duplicates --format json --index {index} > /dev/null"
    # a first run: the verifications and candidate pairs an earlier run kept (simsearch.verified, .candidates) are
    # removed before each
    first = f"rm -rf {index / 'verified'} {index / 'candidates'} && {duplicates}"
    out["duplicates"] = timed(["sh", "-c", first])
    out["duplicates_again"] = timed(["sh", "-c", duplicates])  # a later run: verifications and candidates kept
    out["total_seconds"] = round(out["index"]["seconds"] + out["duplicates"]["seconds"], 2)
    out["startup_seconds"] = timed([*run, "--help"])["seconds"]
    return out


def per_file_stages(folder: Path) -> dict:
    """Seconds per file of each per-file stage, in one process."""
    from simsearch.hashing import image_hashes
    from simsearch.imageio import decode

    files = sorted(folder.iterdir())
    spent = dict.fromkeys(("read", "sha256", "decode_and_pixel_digest", "hashes"), 0.0)
    for path in files:
        t0 = time.perf_counter()
        data = path.read_bytes()
        t1 = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        t2 = time.perf_counter()
        decoded = decode(data)
        t3 = time.perf_counter()
        image_hashes(decoded.image)
        t4 = time.perf_counter()
        for stage, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[stage] += dt
    return {stage: round(1000 * s / len(files), 3) for stage, s in spent.items()} | {"unit": "ms per file, one core"}


def database_writes(work: Path) -> dict:
    """Seconds spent writing the index's rows again in batches, as the indexer does."""
    from simsearch.indexer import write as w

    import simsearch
    from simsearch.schema import Image as Row
    from simsearch.schema import Root

    with simsearch.open_index(work / "ix") as idx, idx.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(Row.__table__.select())]
    for r in rows:  # as the indexer hands them over: the path as text, no ids, no stamp
        for key in ("id", "root_id", "relpath_raw", "indexed_at"):
            r.pop(key)
        r["error"] = None
    fresh = simsearch.open_index(work / "copy", create=True)
    with fresh.atomic() as conn:
        conn.execute(Root.__table__.insert().values(path=str(work), path_raw=str(work).encode()))
    t0 = time.perf_counter()
    for start in range(0, len(rows), 256):
        with fresh.atomic() as conn:
            w.write_files(conn, 1, rows[start : start + 256], {})
    seconds = time.perf_counter() - t0
    fresh.close()
    return {"rows": len(rows), "ms_per_row": round(1000 * seconds / max(len(rows), 1), 3)}


def peer(folder: Path) -> dict:
    if not PEER.exists():
        return {"skipped": ".venv-peers is absent (make bench creates it)"}
    return timed([str(PEER), str(folder), "--json"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 5000])
    opts = parser.parse_args()
    runs = []
    for n in opts.sizes:
        work = Path(tempfile.mkdtemp())
        try:
            make_folder(work / "photos", n)
            ours = simsearch_commands(work / "photos", work)
            theirs = peer(work / "photos")
            run = {"images": n, "simsearch": ours, "immaculate_pdq": theirs,
                   "per_file": per_file_stages(work / "photos"), "database": database_writes(work)}
            if "seconds" in theirs:
                run["wall_ratio_simsearch_over_immaculate"] = round(ours["total_seconds"] / theirs["seconds"], 2)
            runs.append(run)
            print(run, flush=True)
        finally:
            shutil.rmtree(work)
    write("stages", {"note": "hashes-only index plus duplicates --format json, 2 workers; Immaculate at its "
                             "defaults (PDQ, one core); best of 3 after a warm-up", "runs": runs})


if __name__ == "__main__":
    main()
