"""A long fuzz run (``make fuzz``): a seeded mutation corpus of every format Pillow and pillow-heif write
(``samples/fuzz_corpus.py``, 500 mutants per format by default), through the decode step file by file
and through a real ``simsearch index`` run. The peer is imagededup's PHash encoder over the same files
(its own error handling), in the same run. Writes benchmarks/results/fuzz.json; exits 1 on any crash.

Usage: python benchmarks/fuzz.py [--per-format 500] [--seed 1]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import REPO, write

sys.path.insert(0, str(REPO / "samples"))
from fuzz_corpus import make_corpus  # noqa: E402

import simsearch  # noqa: E402
from simsearch.errors import ImageError  # noqa: E402
from simsearch.imageio import decode  # noqa: E402


def decode_all(files: list[Path]) -> dict:
    kinds: Counter = Counter()
    crashes = []
    t0 = time.perf_counter()
    for path in files:
        try:
            decode(path.read_bytes())
            kinds["ok"] += 1
        except ImageError as exc:
            kinds[exc.kind] += 1
        except Exception as exc:  # noqa: BLE001 - what the fuzz run looks for
            crashes.append(f"{path.name}: {type(exc).__name__}: {exc}")
    return {"files": len(files), "outcomes": dict(kinds), "crashes": crashes,
            "seconds": round(time.perf_counter() - t0, 2)}


def index_run(folder: Path, work: Path) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index",
                           str(work / "ix"), "--no-progress"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    with simsearch.open_index(work / "ix") as idx:
        indexed, failed = len(idx.images()), len(idx.failures())
    return {"exit_code": done.returncode, "indexed": indexed, "failed": failed, "seconds": round(seconds, 2),
            "stderr_tail": done.stderr[-500:]}


def peer(folder: Path) -> dict:
    try:
        from imagededup.methods import PHash
    except ImportError:
        return {"skipped": "imagededup is not installed (make bench installs it)"}
    t0 = time.perf_counter()
    try:
        encoded = PHash(verbose=False).encode_images(image_dir=str(folder), num_enc_workers=1)
    except Exception as exc:  # noqa: BLE001 - the peer's own robustness is what is measured
        return {"crashed": f"{type(exc).__name__}: {exc}"}
    return {"encoded": sum(v is not None for v in encoded.values()), "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-format", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    try:
        made = make_corpus(work / "corpus", opts.per_format, opts.seed)
        files = made["good"] + made["mutant"]
        result = {"seed": opts.seed, "good": len(made["good"]), "mutants": len(made["mutant"]),
                  "decode": decode_all(files), "index": index_run(work / "corpus", work),
                  "peer_imagededup_phash": peer(work / "corpus")}
    finally:
        shutil.rmtree(work)
    result["lost"] = len(files) - result["index"]["indexed"] - result["index"]["failed"]
    write("fuzz", result)
    if result["decode"]["crashes"] or result["index"]["exit_code"] != 0 or result["lost"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
