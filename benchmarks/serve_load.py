"""Load on `simsearch serve` (issue 14): N concurrent clients on loopback for a fixed time, each sending
`POST /api/search` with one image, against an index of 10k embedded images; p50/p99 latency, requests per
second and errors.

The index holds the `dups` images with real EfficientNet-Lite0 embeddings, padded to --vectors with synthetic
ones (samples/synthetic.py) under the same model, so the search runs over a 10k-vector index. The queries are
20 `dups` photos re-encoded as 640-pixel JPEGs (a listing photo's size). The peer is the same query through
the Python API in one process, one at a time (no HTTP, no concurrency): the server's overhead made visible.

    python benchmarks/serve_load.py [--clients 4] [--seconds 30] [--vectors 10000]
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import REPO, require_dups, write
from PIL import Image

sys.path.insert(0, str(REPO / "samples"))
from synthetic import padded_index  # noqa: E402

MODEL = "efficientnet_lite0"


def _queries(images: list[Path]) -> list[bytes]:
    out = []
    for path in images[:: max(1, len(images) // 20)][:20]:
        img = Image.open(path).convert("RGB")
        img.thumbnail((640, 640))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def _client(url: str, queries: list[bytes], until: float, latencies: list, errors: list, offset: int) -> None:
    with httpx.Client(timeout=30) as client:
        n = offset
        while time.perf_counter() < until:
            start = time.perf_counter()
            try:
                reply = client.post(url + "/api/search", files=[("image", ("q.jpg", queries[n % len(queries)]))],
                                    data={"k": "10"})
                ok = reply.status_code == 200 and "matches" in reply.json()["results"][0]
            except httpx.HTTPError:
                ok = False
            (latencies if ok else errors).append(time.perf_counter() - start)
            n += 1


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--vectors", type=int, default=10_000)
    args = parser.parse_args()
    folder = require_dups() / "images"
    images = sorted(p for p in folder.rglob("*") if p.is_file())
    queries = _queries(images)
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "ix"
        with padded_index(index, folder, args.vectors, MODEL, seed=5) as idx:
            vectors = len(idx.vectors(MODEL)[0])
            embedder = idx.embedder()
            for q in queries[:2]:  # the first search builds the vector index, the second its reduced scan
                idx.search(q, k=10, embedder=embedder)
            start = time.perf_counter()
            for q in queries * 3:
                idx.search(q, k=10, embedder=embedder)
            api_ms = 1000 * (time.perf_counter() - start) / (3 * len(queries))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "simsearch.cli", "serve", "--index", str(index), "--port",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx.get(url + "/api/stats", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            _client(url, queries, time.perf_counter() + 3, [], [], 0)  # warm-up
            latencies, errors = [], []
            until = time.perf_counter() + args.seconds
            threads = [threading.Thread(target=_client, args=(url, queries, until, latencies, errors, n))
                       for n in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            server.terminate()
            server.wait(10)
    write("serve_load", {
        "endpoint": "POST /api/search (one 640-px JPEG, k=10)", "vectors": vectors, "clients": args.clients,
        "seconds": args.seconds, "requests": len(latencies), "errors": len(errors),
        "requests_per_s": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1), "p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "api_one_at_a_time_ms": round(api_ms, 1),
        "peer": "the same query through the Python API, one at a time in one process",
        "targets": {"p50_ms_below": 50, "p99_ms_below": 150, "errors": 0},
    })


if __name__ == "__main__":
    main()
