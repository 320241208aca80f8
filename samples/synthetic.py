"""Synthetic embeddings for tests and benchmarks of the vector index at sizes no image folder reaches:
clustered unit vectors (like a CNN's, they lie near a low-dimensional set), written into an index through
the same write layer the indexer uses, each under an image row of its own."""

from __future__ import annotations

import json
import time

import numpy as np
from simsearch.indexer import write
from sqlalchemy import select

from simsearch.schema import OK, Embedder, Image

MODEL = "synthetic"


def clustered_vectors(n: int, dim: int = 1280, *, seed: int = 0, clusters: int = 1000, rank: int = 64) -> np.ndarray:
    """``n`` unit vectors: cluster centres in a random ``rank``-dimensional subspace, each vector a centre plus
    noise inside it and a little outside."""
    return np.concatenate(list(clustered_blocks(n, dim, seed=seed, clusters=clusters, rank=rank)))


def clustered_blocks(n: int, dim: int = 1280, *, seed: int = 0, clusters: int = 1000, rank: int = 64,
                     block: int = 100_000):
    """``clustered_vectors`` a block at a time, for collections larger than memory."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)  # rank x dim, orthonormal
    centres = rng.standard_normal((clusters, rank)).astype(np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        low = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, rank), dtype=np.float32)
        out = low @ basis + 0.02 * rng.standard_normal((m, dim), dtype=np.float32)
        yield out / np.linalg.norm(out, axis=1, keepdims=True)


def fill(engine, vectors, *, root: str = "/synthetic", batch: int = 20_000, model: str = MODEL) -> None:
    """One image row (status ok, no file behind it) and one ``model`` embedding per vector, committed in
    batches. ``vectors``: an array, or an iterable of blocks. A model the index does not hold yet is recorded
    with a minimal spec."""
    blocks = [vectors] if isinstance(vectors, np.ndarray) else vectors
    root_id, start = None, 0
    for big in blocks:
        for offset in range(0, len(big), batch):
            root_id = _fill_batch(engine, big[offset : offset + batch], start, root_id, root, model)
            start += len(big[offset : offset + batch])


def _fill_batch(engine, block: np.ndarray, start: int, root_id: int | None, root: str, model: str) -> int:
    if root_id is None:
        spec = json.dumps({"name": model, "dim": int(block.shape[1])})
        with engine.begin() as conn:
            if conn.execute(select(Embedder.name).where(Embedder.name == model)).first() is None:
                conn.execute(Embedder.__table__.insert().values(name=model, spec=spec, created_at=time.time()))
            root_id = write.root_id(conn, root)
    names = [f"{start + n:09d}.jpg" for n in range(len(block))]
    rows = [{"root_id": root_id, "relpath": name, "relpath_raw": name.encode(), "size": 0, "mtime_ns": 0,
             "status": OK, "indexed_at": 0.0} for name in names]
    with engine.begin() as conn:
        conn.execute(Image.__table__.insert(), rows)
        ids = conn.execute(select(Image.id).where(Image.root_id == root_id, Image.relpath.between(names[0], names[-1]))
                           .order_by(Image.id)).scalars().all()
        write.write_embeddings(conn, model, ids, block)
        write.bump_version(conn)
    return root_id


def padded_index(index, folder, vectors: int, model: str, *, seed: int = 0):
    """A new index at ``index`` of the images under ``folder`` with real ``model`` embeddings, padded with
    synthetic vectors under the same model to ``vectors`` in all (the benchmarks' way to reach a collection
    size without that many photos). Returns the open index."""
    import simsearch

    idx = simsearch.open_index(index, create=True)
    idx.add([folder], embed=model)
    fill(idx.engine, clustered_blocks(vectors - idx.stats()["embeddings"][model], 1280, seed=seed), model=model)
    return idx
