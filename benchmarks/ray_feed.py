"""How fast Ray Data's tasks feed one GPU actor, the shape of `index --engine ray` on a GPU machine (issue 13),
simulated on CPUs: no GPU, no images. Ray is given CPUS logical CPUs and one logical GPU; each task sleeps as long
as a block of 128 photos takes to decode on one core and returns 128 network inputs of 150 KB; one actor, holding
the GPU and a CPU, unpickles them, as the model stage does, and returns small results. The stage settings are the
engine's (`indexer/ray_engine.py`). Each setting of Ray Data's operator resource reservation runs at two sizes in
a fresh Ray, and the difference gives the steady rate, against the ideal: every free CPU busy with a task.

On one H100 machine the engine fed its GPU actor at 0.41x the local engine's rate (see README, Scaling); this
checks whether Ray Data's reservation is what holds the tasks back.

Usage: python benchmarks/ray_feed.py [--cpus 4] [--block-seconds 0.72]
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import time

from common import write

BLOCK = 128
FEEDER_CPUS = 0.75  # as the engine's decoding tasks beside a GPU actor


def run(files: int, cpus: int, block_seconds: float, reservation: bool) -> float:
    """Seconds to stream ``files`` through the two stages (in this process: call it in a fresh one)."""
    import numpy as np
    import ray

    ray.init(num_cpus=cpus, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.op_resource_reservation_enabled = reservation

    def decode(batch):
        time.sleep(block_seconds * len(batch["task"]) / BLOCK)
        out = np.empty(len(batch["task"]), dtype=object)
        out[:] = [pickle.dumps(np.zeros(150_000, np.uint8)) for _ in batch["task"]]
        return {"result": out}

    class Model:
        def __call__(self, batch):
            inputs = [pickle.loads(blob) for blob in batch["result"]]
            out = np.empty(len(inputs), dtype=object)
            out[:] = [bytes(5_000) for _ in inputs]
            return {"result": out}

    ds = ray.data.from_items([{"task": pickle.dumps(n)} for n in range(files)], override_num_blocks=files // BLOCK)
    ds = ds.map_batches(decode, batch_size=BLOCK, batch_format="numpy", num_cpus=FEEDER_CPUS)
    ds = ds.map_batches(Model, batch_size=BLOCK, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=1),
                        num_gpus=1, num_cpus=1)
    start = time.perf_counter()
    for _ in ds.iter_batches(batch_size=64, batch_format="numpy"):
        pass
    return time.perf_counter() - start


def timed(files: int, cpus: int, block_seconds: float, reservation: bool) -> float:
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps([files, cpus, block_seconds, reservation])],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs given to Ray (keep below 3x the cores)")
    parser.add_argument("--block-seconds", type=float, default=0.72,
                        help="one task's time: 128 photos at 5.6 ms each (16 cores at 2,830 img/s)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(run(*json.loads(args.one)))
        return
    small, large = 30 * BLOCK, 120 * BLOCK
    ideal = (args.cpus - 1) / FEEDER_CPUS * BLOCK / args.block_seconds
    rows = {}
    for reservation in (True, False):
        seconds = [timed(n, args.cpus, args.block_seconds, reservation) for n in (small, large)]
        rate = (large - small) / (seconds[1] - seconds[0])
        rows["reservation_on" if reservation else "reservation_off"] = {
            "seconds": dict(zip(map(str, (small, large)), (round(s, 2) for s in seconds), strict=True)),
            "steady_img_per_s": round(rate, 1), "of_ideal": round(rate / ideal, 3)}
    write("ray_feed", {"cpus": args.cpus, "gpus": 1, "block_seconds": args.block_seconds,
                       "ideal_img_per_s": round(ideal, 1), "settings": rows,
                       "ratio_off_over_on": round(rows["reservation_off"]["steady_img_per_s"]
                                                  / rows["reservation_on"]["steady_img_per_s"], 2),
                       "note": "simulated: sleeping tasks, one logical GPU; Ray Data's default is reservation on"})


if __name__ == "__main__":
    main()
