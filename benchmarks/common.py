"""Shared helpers for the benchmarks: data location, results, peak memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DUPS = REPO.parent / "shared" / "data" / "dups"
RESULTS = Path(__file__).resolve().parent / "results"
# low ends of level copy's borderline band (cheap probabilities) at which the cost of verifying fewer pairs is
# reported: calibrate.py gives the pair F1 each would score, duplicates_scale.py the time each would take at 100k
NARROWER_LOW_ENDS = (0.01, 0.02, 0.05, 0.1, 0.2)


def require_dups() -> Path:
    if not (DUPS / "images").is_dir():
        print(f"SKIPPED: {DUPS} is absent (the development data set lives in ../shared/data)")
        sys.exit(0)
    return DUPS


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def time_index(folder: Path, *options: str, device: str = "cpu", env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of a whole `simsearch index FOLDER OPTIONS` command into a fresh index, and its summary."""
    tmp = Path(tempfile.mkdtemp())
    try:
        cmd = [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(tmp / "ix"),
               "--no-progress", *options]
        if device == "cuda":
            cmd += ["--backend", "torch", "--device", "cuda"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return time.perf_counter() - start, done.stdout.strip()
    finally:
        shutil.rmtree(tmp)


def decided_pairs(idx, level: str = "copy") -> set[frozenset[str]]:
    """The pairs of file names an index's candidate pairs decide duplicates at ``level`` (calibrated cut)."""
    from simsearch.duplicates import decide  # noqa: PLC0415 - the benchmarks that time imports do not need it

    found = decide(idx._reads, level)
    d = found.decisions
    names = [Path(found.records[int(i)].path).name if int(i) in found.records else None for i in found.collection.ids]
    return {frozenset((names[a], names[b])) for a, b, yes in zip(d.pairs.left.tolist(), d.pairs.right.tolist(),
                                                                   d.matched().tolist()) if yes}
