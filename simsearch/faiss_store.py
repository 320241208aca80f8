"""Derived FAISS indexes, rebuilt when stale: binary indexes over the stored hashes
and inner-product indexes over the stored embeddings.

Each lives in ``faiss/<name>.index`` with the row ids beside it and a stamp
naming the database data version (and settings) it was built from. The
database stays the source of truth; these files can be deleted at any time.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from .errors import InvalidArgument
from .hamming import HASH_BITS
from .names import ANN_KINDS
from .store import file_stem

EXACT_BELOW = 100_000  # auto: exact search below this many vectors, IVF from here on
# IVF scans 1/8 of its lists per query, and at least 128 (recall@10 0.97 at 1M, 0.98 at 100k: benchmarks/ann.py)
PROBE_FRACTION, MIN_PROBES = 8, 128
REFINE_FACTOR = 8  # IVF re-ranks 8 k candidates with the 8-bit codes
_TRAIN_PER_LIST = 50
_RANGE_BLOCK = 4096  # queries per range_search call when pairing every vector
_PAIR_NEIGHBOURS = 64  # approximate indexes pair each vector with at most this many neighbours


class BinaryIndex:
    def __init__(self, index: faiss.IndexBinary, ids: np.ndarray):
        self.index = index
        self.ids = ids

    def search(self, queries: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances), each (len(queries), <=k), nearest first; missing slots have id -1."""
        if len(self.ids) == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.int64)
        codes = np.array(queries, dtype=np.int64).view(np.uint8).reshape(len(queries), HASH_BITS // 8)
        distances, rows = self.index.search(codes, min(k, len(self.ids)))
        return np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1), distances


class VectorIndex:
    """Cosine search over unit vectors: inner product, exact (flat) or approximate (IVF: 4-bit
    product-quantised fast scan, re-ranked with 8-bit scalar codes)."""

    def __init__(self, index: faiss.Index, ids: np.ndarray, kind: str):
        self.index = index
        self.ids = ids
        self.kind = kind

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, similarities), each (len(queries), <=k); missing slots have id -1."""
        if len(self.ids) == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32)
        sims, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.ids)))
        return np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1), sims

    def pairs(self, vectors: np.ndarray, min_similarity: float) -> tuple[np.ndarray, np.ndarray]:
        """Row pairs (i < j) of ``vectors`` (the indexed ones, in id order) at or above ``min_similarity``:
        all of them for a flat index; for IVF, those among each vector's 64 nearest neighbours."""
        left, right = [], []
        radius = np.nextafter(np.float32(min_similarity), np.float32(-1))  # range_search keeps sim > radius
        for start in range(0, len(vectors), _RANGE_BLOCK):
            block = np.ascontiguousarray(vectors[start : start + _RANGE_BLOCK], dtype=np.float32)
            if self.kind == "flat":
                lims, _sims, rows = self.index.range_search(block, float(radius))
                query = np.repeat(np.arange(start, start + len(block)), np.diff(lims).astype(np.int64))
            else:
                sims, found = self.index.search(block, min(_PAIR_NEIGHBOURS, len(self.ids)))
                hit = (found >= 0) & (sims >= min_similarity)
                query = np.nonzero(hit)[0] + start
                rows = found[hit]
            keep = query < rows
            left.append(query[keep])
            right.append(rows[keep])
        if not left:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64)


def build_binary(codes: np.ndarray) -> faiss.IndexBinary:
    index = faiss.IndexBinaryFlat(HASH_BITS)
    if len(codes):
        index.add(np.ascontiguousarray(codes, dtype=np.uint64).view(np.uint8).reshape(-1, HASH_BITS // 8))
    return index


def build_vectors(vectors: np.ndarray, kind: str = "auto", *, seed: int = 0) -> tuple[faiss.Index, str]:
    """An inner-product index over unit vectors; ``auto`` picks flat below ``EXACT_BELOW`` vectors.

    ``ivf``: an inverted file of about 2 sqrt(n) lists whose vectors are product-quantised to 4 bits per
    4 dimensions and scanned with SIMD (FAISS fast scan), the candidates re-ranked with 8-bit scalar codes.
    """
    if kind not in ANN_KINDS:
        raise InvalidArgument(f"unknown vector index {kind!r}; choose one of {', '.join(ANN_KINDS)}")
    n, dim = vectors.shape
    if kind == "auto":
        kind = "flat" if n < EXACT_BELOW else "ivf"
    if kind == "flat" or n < 2:
        index, kind = faiss.IndexFlatIP(dim), "flat"
    else:
        nlist = ivf_lists(n)
        codes = f"PQ{dim // 4}x4fs" if dim % 4 == 0 else "SQ8"
        index = faiss.index_factory(dim, f"IVF{nlist},{codes},Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if n > _TRAIN_PER_LIST * nlist:  # k-means needs tens of points per list, not all of them
            pick = np.sort(np.random.default_rng(seed).choice(n, _TRAIN_PER_LIST * nlist, replace=False))
            sample = vectors[pick]
        faiss.extract_index_ivf(index).cp.seed = seed
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        _set_search_params(index)
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


def _set_search_params(index: faiss.Index) -> None:
    """IVF search settings, which FAISS does not keep in the file."""
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(ivf.nlist, max(ivf.nlist // PROBE_FRACTION, MIN_PROBES))
    faiss.downcast_index(index).k_factor = REFINE_FACTOR


def ivf_lists(n: int) -> int:
    """About 2 sqrt(n) inverted lists, a power of two, capped so each list gets 39+ training points."""
    target = 2 ** round(math.log2(max(2 * math.sqrt(max(n, 1)), 1)))
    return int(max(1, min(target, 65536, n // 39)))


def binary_index(folder: Path, method: str, version: int, load: Callable, save: bool = True) -> BinaryIndex:
    """The FAISS index for hash ``method`` in ``folder``, loaded, or rebuilt from ``load()`` -> (ids, codes)
    if it was built from another data ``version`` (and kept in ``folder`` where ``save``)."""

    def build():
        ids, codes = load()
        return build_binary(codes), ids

    index, ids = _cached(folder, method, {"data_version": version, "method": method}, build,
                         faiss.read_index_binary, faiss.write_index_binary, save)
    return BinaryIndex(index, ids)


def vector_index(folder: Path, model: str, kind: str, version: int, load: Callable,
                 save: bool = True) -> VectorIndex:
    """The FAISS index over ``model``'s embeddings in ``folder``, loaded, or rebuilt from ``load()`` ->
    (ids, vectors) if stale (and kept in ``folder`` where ``save``)."""
    built_kind = {}

    def build():
        ids, vectors = load()
        index, built_kind["kind"] = build_vectors(vectors, kind)
        return index, ids

    stamp = {"data_version": version, "model": model, "kind": kind}
    index, ids = _cached(folder, f"embedding-{file_stem(model)}", stamp, build, faiss.read_index, faiss.write_index,
                         save)
    actual = "flat" if isinstance(index, faiss.IndexFlat) else "ivf"
    if actual == "ivf":
        _set_search_params(index)
    return VectorIndex(index, ids, built_kind.get("kind", actual))


def _cached(folder: Path, name: str, stamp: dict, build: Callable, read: Callable, write: Callable, save: bool):
    """(index, ids) from ``folder/name.*`` if its stamp matches, else built, saved (where ``save``) and
    returned."""
    stamp_file, index_file, ids_file = (folder / f"{name}{ext}" for ext in (".json", ".index", ".ids.npy"))
    try:
        if json.loads(stamp_file.read_text()) == stamp:
            return read(str(index_file)), np.load(ids_file)
    except (OSError, ValueError, RuntimeError):
        pass  # missing or damaged: rebuild below
    index, ids = build()
    if save:
        try:
            folder.mkdir(exist_ok=True)
            # the stamp goes last: a crash in between leaves a stale stamp, so the next open rebuilds
            _replace(index_file, lambda tmp: write(index, tmp))
            _replace(ids_file, lambda tmp: _save_npy(tmp, ids))
            _replace(stamp_file, lambda tmp: Path(tmp).write_text(json.dumps(stamp)))
        except OSError:
            pass  # a derived file that cannot be kept (full disk, no permission) is rebuilt next time
    return index, ids


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def _replace(target: Path, write) -> None:
    """Write through a temporary file of this process's own, so that neither a crash nor a second
    process writing the same file ever leaves half a file; a failed write leaves no temporary behind."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
