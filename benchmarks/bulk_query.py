"""Bulk queries (issue 13): 1,000 image queries against 100k vectors through one `simsearch search --from-file`
process, against one `simsearch search IMAGE` process per query (the way a script calls the CLI today).

The index holds the `dups` images with real EfficientNet-Lite0 embeddings, padded to 100k vectors with synthetic
ones (samples/synthetic.py) under the same model, so the vector index is the IVF one a 100k collection gets.
The queries are the `dups` images, cycled. Separate processes are timed on --single of them (each one pays
process start, imports, model load and index load) and projected to 1,000; the answers of those queries are
checked to be the same both ways.

    python benchmarks/bulk_query.py [--queries 1000] [--vectors 100000] [--single 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, require_dups, write

sys.path.insert(0, str(REPO / "samples"))
from synthetic import padded_index  # noqa: E402

MODEL = "efficientnet_lite0"


def _search(index: Path, *args: str) -> tuple[float, list]:
    cmd = [sys.executable, "-m", "simsearch.cli", "search", *args, "--index", str(index), "-k", "10", "--format", "json"]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=30)
    args = parser.parse_args()
    folder = require_dups() / "images"
    images = sorted(p for p in folder.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "ix"
        with padded_index(index, folder, args.vectors, MODEL, seed=11) as idx:
            vectors = len(idx.vectors(MODEL)[0])
        queries = [str(images[n % len(images)]) for n in range(args.queries)]
        listing = Path(tmp) / "queries.txt"
        listing.write_text("\n".join(queries) + "\n")
        _search(index, queries[0])  # builds and saves the FAISS index once, outside the timings
        bulk_s, bulk = _search(index, "--from-file", str(listing))
        single = [_search(index, q) for q in queries[: args.single]]
    per_process = statistics.median(t for t, _ in single)
    same = all(block["matches"] == found for block, (_, found) in zip(bulk, single))
    projected = per_process * args.queries
    write("bulk_query", {
        "queries": args.queries, "vectors": vectors, "model": MODEL, "k": 10,
        "bulk_process_s": round(bulk_s, 2), "bulk_ms_per_query": round(1000 * bulk_s / args.queries, 2),
        "separate_processes_timed": args.single, "separate_process_median_s": round(per_process, 3),
        "separate_processes_projected_s": round(projected, 1),
        "speedup": round(projected / bulk_s, 1), "same_answers": same,
        "peer": "one `simsearch search IMAGE` process per query", "target": "speedup >= 20",
    })


if __name__ == "__main__":
    main()
