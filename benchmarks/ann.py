"""Top-10 cosine search over 1M stored 1280-d unit vectors: simsearch's automatic
index (above 100k vectors: IVF, 4-bit PQ fast scan re-ranked with 8-bit codes)
against exact brute-force FAISS search over the same vectors, in the same run.

The vectors are synthetic but shaped like CNN embeddings: clustered around
centres on a low-rank subspace, with per-image noise of varying size (seeded).
Reports per-query latency (one query at a time, and batched), recall@10 against
exhaustive search, build time and the index's bytes per vector.

Usage: python benchmarks/ann.py [--n 1000000] [--queries 500]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from common import peak_rss_mb, write

from simsearch.faiss_store import (
    MIN_PROBES,
    PROBE_FRACTION,
    REFINE_FACTOR,
    build_vectors,
)

DIM = 1280


def embeddings_like(n: int, rng: np.random.Generator, centres: np.ndarray, noise_basis: np.ndarray) -> np.ndarray:
    """Unit vectors near random cluster centres; the noise, of a size varying per vector,
    lies mostly in a 256-d subspace (CNN features spread over a few hundred directions)."""
    out = np.empty((n, DIM), dtype=np.float32)
    rank = len(noise_basis)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        which = rng.integers(0, len(centres), m)
        sigma = rng.uniform(0.3, 1.2, (m, 1)).astype(np.float32)
        noise = rng.standard_normal((m, rank), dtype=np.float32) @ noise_basis / np.sqrt(rank)
        noise += 0.1 * rng.standard_normal((m, DIM), dtype=np.float32) / np.sqrt(DIM)
        block = centres[which] + sigma * noise
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def make_data(n: int, queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rank, clusters = 32, max(1, n // 5)
    basis = rng.standard_normal((rank, DIM), dtype=np.float32) / np.sqrt(rank)
    centres = rng.standard_normal((clusters, rank), dtype=np.float32) @ basis
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise_basis = np.linalg.qr(rng.standard_normal((DIM, 256), dtype=np.float32))[0].T
    return embeddings_like(n, rng, centres, noise_basis), embeddings_like(queries, rng, centres, noise_basis)


def per_query_ms(search, xq: np.ndarray, k: int) -> float:
    search(xq[:5], k)  # warm-up
    t = time.perf_counter()
    for q in xq:
        search(q[None, :], k)
    return (time.perf_counter() - t) / len(xq) * 1000


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    t = time.perf_counter()
    xb, xq = make_data(args.n, args.queries)
    gen_s = time.perf_counter() - t

    t = time.perf_counter()
    _, truth = faiss.knn(xq, xb, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    exact_batch_ms = (time.perf_counter() - t) / len(xq) * 1000
    brute = lambda q, k: faiss.knn(q, xb, k, metric=faiss.METRIC_INNER_PRODUCT)  # noqa: E731
    exact_single_ms = per_query_ms(brute, xq[:20], args.k)

    t = time.perf_counter()
    index, kind = build_vectors(xb, "auto")
    build_s = time.perf_counter() - t
    bytes_per_vector = faiss.serialize_index(index).nbytes / args.n
    ivf = faiss.extract_index_ivf(index)
    nlist, default_nprobe = ivf.nlist, ivf.nprobe
    sweep = []
    for nprobe in sorted({nlist // 32, nlist // 16, nlist // 8, nlist // 4, default_nprobe}):
        ivf.nprobe = nprobe
        _, found = index.search(xq, args.k)
        t = time.perf_counter()
        index.search(xq, args.k)
        batch_ms = (time.perf_counter() - t) / len(xq) * 1000
        single_ms = per_query_ms(lambda q, k: index.search(q, k), xq[:200], args.k)
        sweep.append({"nprobe": nprobe, "recall_at_10": round(recall_at(found, truth), 4),
                      "ms_per_query_single": round(single_ms, 3), "ms_per_query_batched": round(batch_ms, 3)})
    default = next(s for s in sweep if s["nprobe"] == default_nprobe)
    write("ann", {
        "vectors": args.n, "dim": DIM, "queries": args.queries, "k": args.k,
        "data": "synthetic clustered unit vectors (n/5 centres on a rank-32 subspace, noise 0.3-1.2 "
                "mostly in a 256-d subspace), seed 0",
        "index": {"kind": kind, "description": f"IVF{nlist},PQ{DIM // 4}x4fs,Refine(SQ8)", "nlist": int(nlist),
                  "default_nprobe": int(default_nprobe),
                  "nprobe_rule": f"nlist/{PROBE_FRACTION}, at least {MIN_PROBES}",
                  "refine_k_factor": REFINE_FACTOR, "build_seconds": round(build_s, 1),
                  "bytes_per_vector": round(bytes_per_vector, 1)},
        "sweep": sweep,
        "simsearch": default,
        "peer_exact_faiss": {"ms_per_query_single": round(exact_single_ms, 2),
                             "ms_per_query_batched": round(exact_batch_ms, 3),
                             "bytes_per_vector": DIM * 4},
        "speedup_single_query": round(exact_single_ms / default["ms_per_query_single"], 1),
        "generate_seconds": round(gen_s, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
