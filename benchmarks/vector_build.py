"""Vector index build in bounded memory, streamed from PostgreSQL (issue 13).

N synthetic 1280-d unit vectors (samples/synthetic.py: clustered, like a CNN's) are written into an index whose
metadata lives in a PostgreSQL server this script starts on 127.0.0.1. Then, each in a fresh process:
  build  -- the IVF index trained on a sample and filled chunk by chunk from the database, shard by shard;
            its peak resident memory (VmHWM) against the vectors' own size;
  query  -- recall@10 of 1,000 held-out queries against exact search (computed here, streaming the vectors).
The peer is brute force: exact inner-product search over every vector.

    python benchmarks/vector_build.py [--n 2000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, write
from sqlalchemy import select

from simsearch.schema import Image

sys.path.insert(0, str(REPO / "samples"))
from pg_server import postgres_bin, postgres_server  # noqa: E402
from synthetic import MODEL, clustered_blocks, fill  # noqa: E402

DIM, QUERIES, K, SEED = 1280, 1000, 10, 7

CHILD = """
import json, sys, time
import numpy as np
import simsearch
idx = simsearch.open_index(sys.argv[1], db=sys.argv[2])
t = time.perf_counter()
index = idx._reads.vector_index(sys.argv[3])
built = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries the parent's peak across fork and exec into ru_maxrss
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
out = {"seconds": built, "peak_rss_mb": hwm / 1024,
       "shards": json.load(open(f"{sys.argv[1]}/faiss/embedding-{sys.argv[3]}.json"))["shards"],
       "kind": index.kind, "vectors": int(index.index.ntotal)}
if len(sys.argv) > 4:
    queries = np.load(sys.argv[4])
    t = time.perf_counter()
    found, _ = index.search(queries, int(sys.argv[5]))
    out["search_ms_per_query"] = 1000 * (time.perf_counter() - t) / len(queries)
    np.save(sys.argv[6], found)
print(json.dumps(out))
"""


def _child(*args) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _exact(n: int, queries: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, float]:
    """Top-K image ids by exact inner product, streaming the same vectors block by block (the brute-force peer)."""
    start = time.perf_counter()
    best_sims = np.full((len(queries), K), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), K), np.int64)
    offset = 0
    for block in _first(n, []):
        sims = queries @ block.T
        rows = np.arange(offset, offset + len(block))
        all_sims = np.concatenate([best_sims, sims], axis=1)
        all_rows = np.concatenate([best_rows, np.broadcast_to(rows, sims.shape)], axis=1)
        top = np.argsort(-all_sims, axis=1)[:, :K]
        best_sims, best_rows = np.take_along_axis(all_sims, top, 1), np.take_along_axis(all_rows, top, 1)
        offset += len(block)
    return ids[best_rows], time.perf_counter() - start


def _first(n: int, rest: list):
    """The first ``n`` vectors of the stream, block by block; the ``QUERIES`` after them go into ``rest``."""
    seen = 0
    for block in clustered_blocks(n + QUERIES, DIM, seed=SEED):
        keep = block[: max(0, n - seen)]
        rest.append(block[len(keep) :].copy())  # a copy: a view would keep the whole block alive
        seen += len(block)
        if len(keep):
            yield keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2_000_000)
    args = parser.parse_args()
    bin_dir = postgres_bin()
    if bin_dir is None:
        print("SKIPPED: PostgreSQL is not installed (apt-get install postgresql)")
        return
    import simsearch

    with tempfile.TemporaryDirectory() as tmp, postgres_server(bin_dir) as database:
        url, folder = database(), Path(tmp) / "ix"
        t = time.perf_counter()
        held_out = []  # the stream's last vectors: queries, never inserted
        with simsearch.open_index(folder, db=url, create=True) as idx:
            fill(idx.engine, _first(args.n, held_out))
            idx.set_ann("ivf")
            with idx.engine.connect() as conn:  # the vectors' image ids, in the order they were streamed in
                ids = np.fromiter(conn.execute(select(Image.id).order_by(Image.id)).scalars(), np.int64)
        fill_s = time.perf_counter() - t
        print(f"filled {args.n} vectors in {fill_s:.0f} s", file=sys.stderr, flush=True)
        queries = np.concatenate(held_out)
        np.save(Path(tmp) / "q.npy", queries)
        build = _child(folder, url, MODEL)
        print(f"built: {build}", file=sys.stderr, flush=True)
        query = _child(folder, url, MODEL, Path(tmp) / "q.npy", K, Path(tmp) / "found.npy")
        found = np.load(Path(tmp) / "found.npy")
    truth, exact_s = _exact(args.n, queries, ids)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
    vectors_gb = args.n * DIM * 4 / 1e9
    write("vector_build", {
        "vectors": args.n, "dim": DIM, "database": "PostgreSQL (started by this script on 127.0.0.1)",
        "fill_seconds": round(fill_s, 1),
        "build": {**build, "peak_rss_mb": round(build["peak_rss_mb"]), "seconds": round(build["seconds"], 1)},
        "vectors_gb": round(vectors_gb, 2),
        "peak_rss_over_vectors": round(build["peak_rss_mb"] / 1000 / vectors_gb, 3),
        "recall_at_10": round(recall, 4), "queries": QUERIES,
        "search_ms_per_query_batched": round(query["search_ms_per_query"], 3),
        "exact_search_ms_per_query_streamed": round(1000 * exact_s / QUERIES, 3),
        "peer": "brute force (exact inner product over every vector, streamed)",
        "targets": {"peak_rss_mb_below": 4000, "recall_at_10_at_least": 0.95},
        "peak_rss_of_this_script_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })


if __name__ == "__main__":
    main()
