"""The Ray engine against the local engine on the same folder and cores (issue 13).

Each row is a whole `simsearch index` process into a fresh index (median of --runs), on the `dups` images:
  local          -- the local engine, one worker per core;
  ray-started    -- --engine ray with no address: the run starts (and stops) a local Ray instance;
  ray-joined     -- --engine ray --ray-address: a Ray instance already running on this machine (ray start --head),
                    so Ray's start-up is paid once, as on a real cluster.
Then a two-node cluster on this machine (1 CPU a node) indexes the folder with embeddings, and each node's share
of each stage is reported.

    python benchmarks/ray_engine.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import require_dups, write

RAY = str(Path(sys.executable).with_name("ray"))


def _index(folder: Path, *options: str, env: dict | None = None) -> tuple[float, str]:
    tmp = Path(tempfile.mkdtemp())
    try:
        cmd = [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(tmp / "ix"), "--no-progress",
               *options]
        start = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return time.perf_counter() - start, out
    finally:
        shutil.rmtree(tmp)


def _median(folder: Path, runs: int, *options: str, env: dict | None = None) -> tuple[float, str]:
    timed = [_index(folder, *options, env=env) for _ in range(runs)]
    return statistics.median(t for t, _ in timed), timed[-1][1]


def _copies(folder: Path, copies: int) -> Path:
    out = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    for n in range(copies):
        shutil.copytree(folder, out / f"copy{n}", copy_function=_link)
    return out


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shares(out: str) -> dict:
    """stage -> node -> files, from the run's "ray STAGE: files per node: ..." lines."""
    return {stage: {node: int(n) for node, n in re.findall(r"(\w{8}) (\d+)", counts)}
            for stage, counts in re.findall(r"ray (\w+): files per node: (.*)", out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1,
                        help="index this many hard-linked copies of the folder (steady state, start-up amortised)")
    parser.add_argument("--no-started", action="store_true", help="leave out the runs that start their own Ray")
    args = parser.parse_args()
    folder = require_dups() / "images"
    if args.copies > 1:
        folder = _copies(folder, args.copies)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    rows = {}
    for features in ([], ["--embed"]):
        name = "embed" if features else "hashes"
        local, _ = _median(folder, args.runs, *features)
        started = None if args.no_started else _median(folder, args.runs, "--engine", "ray", *features)[0]
        port = _free_port()
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                        "--disable-usage-stats"], check=True, capture_output=True)
        try:
            joined, _ = _median(folder, args.runs, "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", *features,
                                env={**os.environ, "RAY_AUTH_MODE": "token"})  # `ray start` clusters want the token
        finally:
            subprocess.run([RAY, "stop", "--force"], capture_output=True)
        rows[name] = {
            "local_s": round(local, 2), "ray_joined_s": round(joined, 2),
            "local_img_per_s": round(files / local, 1), "ray_joined_img_per_s": round(files / joined, 1),
            "ray_joined_over_local": round(local / joined, 3),
            **({"ray_started_s": round(started, 2), "ray_started_over_local": round(local / started, 3)}
               if started else {}),
        }
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        two_s, out = _index(folder, "--engine", "ray", "--ray-address", cluster.address, "--embed")
    finally:
        cluster.shutdown()
    write("ray_engine" if args.copies == 1 else f"ray_engine_x{args.copies}", {
        "folder": "dups" if args.copies == 1 else f"dups, {args.copies} hard-linked copies", "files": files, "cores": 2, "runs": args.runs, "engines": rows,
        "two_nodes": {"nodes": 2, "cpus_per_node": 1, "features": "hashes and embeddings", "seconds": round(two_s, 2),
                      "files_per_node": _shares(out)},
        "peer": "the local engine (worker processes on the same 2 cores)",
        "target": "ray_joined_over_local >= 0.9",
    })


if __name__ == "__main__":
    main()
