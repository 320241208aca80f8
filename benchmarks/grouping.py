"""Grouping 1M synthetic 64-bit hashes at Hamming distance <= 8: simsearch's
multi-index hashing join against brute-force FAISS range search (IndexBinaryFlat),
which is timed on a slice of the queries and scaled to all of them.

Usage: python benchmarks/grouping.py [--n 1000000] [--distance 8] [--faiss-queries 50000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from common import write

CHILD = r"""
import sys, time, json, resource, numpy as np
sys.path.insert(0, sys.argv[1])
from benchmarks_data import synthetic
from simsearch.hamming import hamming_edges, connected_groups
codes = synthetic(int(sys.argv[2]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
i, j = hamming_edges(codes, int(sys.argv[3]))
groups = connected_groups(len(codes), i, j)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "groups": len(groups), "grouped": int(sum(len(g) for g in groups)),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "input_rss_mb": base / 1024}))
"""


def faiss_brute(codes: np.ndarray, distance: int, queries: int) -> float:
    import faiss

    packed = codes.view(np.uint8).reshape(-1, 8)
    index = faiss.IndexBinaryFlat(64)
    index.add(packed)
    start = time.perf_counter()
    index.range_search(packed[:queries], distance + 1)  # FAISS keeps distances < radius
    return (time.perf_counter() - start) * len(codes) / queries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--distance", type=int, default=8)
    parser.add_argument("--faiss-queries", type=int, default=50_000)
    args = parser.parse_args()
    here = sys.path[0]
    out = subprocess.run([sys.executable, "-c", CHILD, here, str(args.n), str(args.distance)],
                         check=True, capture_output=True, text=True)
    import json

    ours = json.loads(out.stdout)
    from benchmarks_data import synthetic

    brute = faiss_brute(synthetic(args.n), args.distance, args.faiss_queries)
    write("grouping", {
        "n": args.n, "max_distance": args.distance,
        "data": "uniform random 64-bit codes, 10% of them copies of others with up to 8 bits flipped, 5% exact copies "
                "(seed 0)",
        "simsearch": {k: round(v, 2) if isinstance(v, float) else v for k, v in ours.items()},
        "faiss_brute_force_seconds_estimated": round(brute, 1),
        "faiss_note": f"IndexBinaryFlat.range_search timed on {args.faiss_queries} queries, scaled to {args.n}",
        "ratio": round(brute / ours["seconds"], 1),
    })


if __name__ == "__main__":
    main()
