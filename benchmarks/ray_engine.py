"""The Ray engine against the local engine on the same folder and cores (issue 13).

Each row is a whole `simsearch index` process into a fresh index (median of --runs), on the `dups` images:
  local          -- the local engine, one worker per core;
  ray-started    -- --engine ray with no address: the run starts (and stops) a local Ray instance;
  ray-joined     -- --engine ray --ray-address: a Ray instance already running on this machine (ray start --head),
                    so Ray's start-up is paid once, as on a real cluster.
With --copies N the folder is N copies of `dups` (each in bytes of its own: see `_copies`); with --scale K each
engine also indexes K times as many, and the difference between the two sizes gives its steady-state throughput
(past start-up, the first and the last blocks) and its fixed cost. Each engine's timed runs follow a warm-up run
(the page cache; for the joined instance, Ray Data's own actors, which a cluster's first job creates and later jobs
share).
Then a two-node cluster on this machine (1 CPU a node) indexes the folder with embeddings, and each node's share
of each stage is reported.

    python benchmarks/ray_engine.py [--runs 3] [--copies 8 --scale 4 --no-started]

With --device cuda (a GPU machine): generated 1024x768 JPEG photos (--photos), embeddings on the GPU, the local
engine against --engine ray joined to a local Ray instance with every core and the GPU (one GPU actor).

    python benchmarks/ray_engine.py --device cuda [--photos 1920] [--runs 2] [--scale 4]
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
from contextlib import contextmanager
from pathlib import Path

from common import require_dups, time_index, write

RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def _median(folder: Path, runs: int, *options: str, env: dict | None = None) -> tuple[float, str]:
    timed = [time_index(folder, *options, env=env) for _ in range(runs)]
    return statistics.median(t for t, _ in timed), timed[-1][1]


def _copies(folder: Path, copies: int) -> Path:
    """``copies`` copies of ``folder``, each file of copy n with n zero bytes after the image's end (where decoders
    stop): the same pictures in other bytes, which the indexer decodes (identical bytes would take the first
    copy's features). Copy 0 is hard-linked."""
    out = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    shutil.copytree(folder, out / "copy0", copy_function=_link)
    for n in range(1, copies):
        shutil.copytree(folder, out / f"copy{n}", copy_function=lambda src, dst, n=n: _padded(src, dst, n))
    return out


def _padded(src: str, dst: str, n: int) -> None:
    with open(src, "rb") as fh:
        data = fh.read()
    with open(dst, "wb") as fh:
        fh.write(data + bytes(n))


def _count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def _steady(files: int, more: int, local: tuple[float, float], joined: tuple[float, float]) -> dict:
    """Each engine's throughput past its fixed costs (start-up, the first and last blocks), from the difference
    between the two sizes' times, and what each engine's fixed cost was."""
    def rate(times):
        return (more - files) / (times[1] - times[0])

    def fixed(times):
        return times[0] - files / rate(times)

    return {"larger_files": more, "local_larger_s": round(local[1], 2), "ray_joined_larger_s": round(joined[1], 2),
            "ray_joined_over_local_larger": round(local[1] / joined[1], 3),
            "local_steady_img_per_s": round(rate(local), 1), "ray_joined_steady_img_per_s": round(rate(joined), 1),
            "ray_joined_steady_over_local": round(rate(joined) / rate(local), 3),
            "local_fixed_s": round(fixed(local), 2), "ray_joined_fixed_s": round(fixed(joined), 2)}


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


@contextmanager
def _ray_head(*resources: str):
    """A Ray instance (``ray start --head`` on a free loopback port, stopped after): yields the options that join
    it and the environment the runs need. `ray start` clusters use token authentication: the token is made
    first where this machine has none."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    if not (Path.home() / ".ray" / "auth_token").exists():
        subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True, env=env)
    port = _free_port()
    subprocess.run([RAY, "start", "--head", f"--port={port}", *resources, "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env)
    try:
        yield ("--engine", "ray", "--ray-address", f"127.0.0.1:{port}"), env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)


def on_gpu(photos: int, runs: int, scale: int) -> None:
    """The local engine and a joined Ray instance (every core, one GPU actor), embeddings on the GPU; with
    ``scale``, also on ``scale`` copies of the photos, for each engine's steady state."""
    from hash_throughput import make_photos

    folder = make_photos(Path(tempfile.mkdtemp()) / "photos_1024x768", photos)
    larger = _copies(folder, scale) if scale > 1 else None
    options = ("--embed", "--backend", "torch", "--device", "cuda")
    time_index(folder, *options)  # warm-up: page cache, CUDA kernels
    local, _ = _median(folder, runs, *options)
    local_more = _median(larger, runs, *options)[0] if larger else None
    cores = os.cpu_count() or 1
    with _ray_head(f"--num-cpus={cores}", "--num-gpus=1") as (address, env):
        time_index(folder, *address, *options, env=env)  # warm-up: the actor's first CUDA start
        joined, out = _median(folder, runs, *address, *options, env=env)
        joined_more = _median(larger, runs, *address, *options, env=env)[0] if larger else None
    shutil.rmtree(folder.parent)
    if larger:
        shutil.rmtree(larger)
    write("ray_engine_cuda", {
        "files": photos, "photos": "1024x768 JPEG", "cores": cores, "gpus": 1, "runs": runs,
        "features": "hashes and embeddings (torch fp16 on the GPU)",
        "local_s": round(local, 2), "ray_joined_s": round(joined, 2),
        "local_img_per_s": round(photos / local, 1), "ray_joined_img_per_s": round(photos / joined, 1),
        "ray_joined_over_local": round(local / joined, 3), "ray_output": out.strip().splitlines(),
        **(_steady(photos, photos * scale, (local, local_more), (joined, joined_more)) if larger else {}),
        "peer": "the local engine (worker processes on the same cores, the model in the main process on the GPU)",
        "target": "ray_joined_over_local >= 0.9",
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1,
                        help="index this many copies of the folder (steady state, start-up amortised)")
    parser.add_argument("--scale", type=int, default=1,
                        help="also index SCALE times as many copies, for each engine's steady-state throughput")
    parser.add_argument("--no-started", action="store_true", help="leave out the runs that start their own Ray")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--photos", type=int, default=1920, help="with --device cuda: generated photos to index")
    args = parser.parse_args()
    if args.device == "cuda":
        return on_gpu(args.photos, args.runs, args.scale)
    dups = require_dups() / "images"
    folder = _copies(dups, args.copies) if args.copies > 1 else dups
    larger = _copies(dups, args.copies * args.scale) if args.scale > 1 else None
    files, more = _count(folder), _count(larger) if larger else 0
    rows = {}
    for features in ([], ["--embed"]):
        name = "embed" if features else "hashes"
        time_index(folder, *features)  # warm-up: the page cache
        local, _ = _median(folder, args.runs, *features)
        started = None if args.no_started else _median(folder, args.runs, "--engine", "ray", *features)[0]
        with _ray_head("--num-cpus=2") as (address, env):
            # warm-up: the cluster's first job creates Ray Data's own actors, which later jobs share
            time_index(folder, *address, *features, env=env)
            joined, _ = _median(folder, args.runs, *address, *features, env=env)
            joined_more = _median(larger, args.runs, *address, *features, env=env)[0] if larger else None
        local_more = _median(larger, args.runs, *features)[0] if larger else None
        rows[name] = {
            "local_s": round(local, 2), "ray_joined_s": round(joined, 2),
            "local_img_per_s": round(files / local, 1), "ray_joined_img_per_s": round(files / joined, 1),
            "ray_joined_over_local": round(local / joined, 3),
            **({"ray_started_s": round(started, 2), "ray_started_over_local": round(local / started, 3)}
               if started else {}),
            **(_steady(files, more, (local, local_more), (joined, joined_more)) if larger else {}),
        }
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        two_s, out = time_index(folder, "--engine", "ray", "--ray-address", cluster.address, "--embed")
    finally:
        cluster.shutdown()
    write("ray_engine" if args.copies == 1 else f"ray_engine_x{args.copies}", {
        "folder": "dups" if args.copies == 1 else f"dups, {args.copies} copies", "files": files, "cores": 2, "runs": args.runs, "engines": rows,
        "two_nodes": {"nodes": 2, "cpus_per_node": 1, "features": "hashes and embeddings", "seconds": round(two_s, 2),
                      "files_per_node": _shares(out)},
        "peer": "the local engine (worker processes on the same 2 cores)",
        "target": "ray_joined_over_local >= 0.9" + (" (steady state: ray_joined_steady_over_local)" if larger else ""),
    })
    for made in (folder, larger):
        if made is not None and made != dups:
            shutil.rmtree(made)


if __name__ == "__main__":
    main()
