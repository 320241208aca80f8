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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

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
SHARD_VECTORS = 1_000_000  # an IVF index past this many vectors is split into shards, built one at a time
CHUNK_VECTORS = 20_000  # vectors read from the database at a time while building
_RANGE_BLOCK = 4096  # queries per range_search call when pairing every vector
# a flat index this large that is searched more than once also keeps its vectors projected onto their
# REDUCED_DIMS main directions: a few queries at a time scan that copy (a fifth of the float vectors' bytes:
# memory traffic is what a scan waits on), re-score the best REDUCED_CANDIDATES x k exactly, and keep the
# answer only where a bound proves that no other vector can beat it (else the query scans the float vectors):
# results exactly those of the flat index. On 5,000 real 1280-d embeddings 256 directions held 98 % of their
# energy and 99.8 % of queries were proven; in the server (10k vectors, 4 threads on 2 cores) a search took
# 1.6 ms of CPU against 3.0 with the half-precision copy this replaces (2026-11-26)
REDUCED_FROM = 4096
REDUCED_DIMS = 256
REDUCED_CANDIDATES = 32
_PROJECTION_SAMPLE = 20_000  # vectors the main directions are computed from
_BLAS_QUERIES = 20  # from this many queries a flat search is one matrix product (FAISS's own threshold)
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
        self._searches = 0
        self._reduced: ReducedScan | None = None
        self._reduced_lock = threading.Lock()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, similarities), each (len(queries), <=k); missing slots have id -1."""
        if len(self.ids) == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32)
        k = min(k, len(self.ids))
        index = self._reduced_first(len(queries), k) or self.index
        sims, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1), sims

    def _reduced_first(self, queries: int, k: int) -> "ReducedScan | None":
        """The reduced scan with exact re-scoring (``ReducedScan``), for a flat index searched again (a server,
        an API loop: a one-off search would pay more to make it than it saves) a few queries at a time (more go
        through one matrix product, which the copy does not speed up). Made by the first thread to ask; the
        others search the float index meanwhile."""
        self._searches += 1
        usable = (self.kind == "flat" and queries < _BLAS_QUERIES and k * REDUCED_CANDIDATES <= len(self.ids)
                  and len(self.ids) >= REDUCED_FROM and isinstance(self.index, faiss.IndexFlat))
        if not usable or (self._reduced is None and self._searches < 2):
            return None
        if self._reduced is None and self._reduced_lock.acquire(blocking=False):
            try:
                self._reduced = self._reduced or ReducedScan(self.index)
            finally:
                self._reduced_lock.release()
        return self._reduced

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


class ReducedScan:
    """Exact inner-product search over a flat index through a copy of its vectors projected onto their
    ``dims`` main directions P (uncentred, so inner products are kept): a query scans the copy for
    ``REDUCED_CANDIDATES`` x k candidates and re-scores them with the flat index's own distances.

    The answer is proven: any other vector x scores at most its projected score, itself at most the last
    candidate's t, plus |r_q| |r_x| (the parts of query and vector off P), so where t + |r_q| max|r_x| is
    below the k-th re-scored similarity no vector left out could enter the top k. Queries not proven scan
    the float vectors."""

    def __init__(self, flat: faiss.IndexFlat, dims: int | None = None):
        self.flat = flat
        dims = min(dims or REDUCED_DIMS, flat.d)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
        sample = vectors[:: max(1, flat.ntotal // _PROJECTION_SAMPLE)]
        _, directions = np.linalg.eigh((sample.T @ sample).astype(np.float64))  # ascending: main ones last
        self.projection = np.ascontiguousarray(directions[:, ::-1][:, :dims], dtype=np.float32)
        self.copy = faiss.IndexFlatIP(self.projection.shape[1])
        self.max_residual = 0.0
        for start in range(0, flat.ntotal, CHUNK_VECTORS):
            chunk = vectors[start : start + CHUNK_VECTORS]
            projected = chunk @ self.projection
            self.copy.add(projected)
            self.max_residual = max(self.max_residual, float(_residuals(chunk, projected).max()))
        self.fallbacks = 0  # queries the bound did not prove (for tests and profiling)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows), as ``flat.search`` gives them."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        projected = queries @ self.projection
        bounds, candidates = self.copy.search(projected, min(k * REDUCED_CANDIDATES, self.flat.ntotal))
        sims = np.empty((len(queries), k), np.float32)
        rows = np.empty((len(queries), k), np.int64)
        self.flat.compute_distance_subset(len(queries), faiss.swig_ptr(queries), candidates.shape[1],
                                          faiss.swig_ptr(exact := np.empty(candidates.shape, np.float32)),
                                          faiss.swig_ptr(candidates))
        # a float32 margin: the bound's own rounding must not prove a wrong answer; with every vector a
        # candidate, none was left out
        slack = bounds[:, -1] + _residuals(queries, projected) * self.max_residual + 1e-4
        if candidates.shape[1] == self.flat.ntotal:
            slack[:] = -np.inf
        unproven = []
        for n in range(len(queries)):
            # as the flat scan does: of equal similarities the lowest rows are kept, listed highest row first
            kept = np.lexsort((candidates[n], -exact[n]))[:k]
            kept = kept[np.lexsort((-candidates[n, kept], -exact[n, kept]))]
            sims[n], rows[n] = exact[n, kept], candidates[n, kept]
            if not sims[n, -1] > slack[n]:
                unproven.append(n)
        if unproven:
            self.fallbacks += len(unproven)
            sims[unproven], rows[unproven] = self.flat.search(queries[unproven], k)
        return sims, rows


def _residuals(vectors: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """The length of each vector's part off the projection's directions."""
    return np.sqrt(np.maximum(0.0, np.einsum("ij,ij->i", vectors, vectors) - np.einsum("ij,ij->i", projected,
                                                                                        projected)))


def build_binary(codes: np.ndarray) -> faiss.IndexBinary:
    index = faiss.IndexBinaryFlat(HASH_BITS)
    if len(codes):
        index.add(np.ascontiguousarray(codes, dtype=np.uint64).view(np.uint8).reshape(-1, HASH_BITS // 8))
    return index


class VectorSource(NamedTuple):
    """How a build reads the vectors without holding them all: ``chunks()`` yields (ids, vectors) in id order,
    ``sample(size, seed)`` returns ``size`` of them drawn at random."""

    count: int
    dim: int
    chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
    sample: Callable[[int, int], np.ndarray]


def array_source(vectors: np.ndarray, ids: np.ndarray | None = None, chunk: int = CHUNK_VECTORS) -> VectorSource:
    """A ``VectorSource`` over vectors already in memory (row numbers as ids unless given)."""
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else ids

    def chunks():
        for start in range(0, len(vectors), chunk):
            yield ids[start : start + chunk], vectors[start : start + chunk]

    def sample(size: int, seed: int) -> np.ndarray:
        return vectors[sample_rows(len(vectors), size, seed)]

    return VectorSource(len(vectors), vectors.shape[1], chunks, sample)


def sample_rows(count: int, size: int, seed: int) -> np.ndarray:
    """``size`` row numbers out of ``count``, drawn without replacement, in order."""
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def build_vectors(vectors: np.ndarray, kind: str = "auto", *, seed: int = 0) -> tuple[faiss.Index, str]:
    """An inner-product index over unit vectors in memory, one shard; see ``build_shards``."""
    [(index, _ids)], kind = _collect(build_shards(array_source(vectors), kind, seed=seed,
                                                  shard_size=max(len(vectors), 1)))
    return index, kind


def build_shards(source: VectorSource, kind: str = "auto", *, seed: int = 0,
                 shard_size: int | None = None) -> Iterator[tuple[faiss.Index, np.ndarray, str]]:
    """(shard, its ids, kind) one shard at a time: an inner-product index over unit vectors, streamed in from
    ``source`` chunk by chunk. ``auto`` picks flat below ``EXACT_BELOW`` vectors.

    ``ivf``: an inverted file of about 2 sqrt(n) lists whose vectors are product-quantised to 4 bits per
    4 dimensions and scanned with SIMD (FAISS fast scan), the candidates re-ranked with 8-bit scalar codes;
    trained on a sample of at most 50 vectors per list, then split into shards of ``shard_size`` vectors
    (default ``SHARD_VECTORS``) that share the trained quantiser. A build holds one shard, one chunk and the
    training sample, never the collection; a flat index is never split.
    """
    shard_size = shard_size or SHARD_VECTORS
    if kind not in ANN_KINDS:
        raise InvalidArgument(f"unknown vector index {kind!r}; choose one of {', '.join(ANN_KINDS)}")
    n, dim = source.count, source.dim
    if kind == "auto":
        kind = "flat" if n < EXACT_BELOW else "ivf"
    if kind == "flat" or n < 2:
        kind, shard_size = "flat", max(n, 1)
        empty = faiss.serialize_index(faiss.IndexFlatIP(dim))
    else:
        empty = faiss.serialize_index(_trained_ivf(source, seed))
    shard, ids = faiss.deserialize_index(empty), []
    for chunk_ids, chunk in source.chunks():
        while len(chunk):
            room = shard_size - shard.ntotal
            shard.add(np.ascontiguousarray(chunk[:room], dtype=np.float32))
            ids.append(chunk_ids[:room])
            chunk, chunk_ids = chunk[room:], chunk_ids[room:]
            if shard.ntotal == shard_size:
                yield _ready(shard, kind), np.concatenate(ids).astype(np.int64), kind
                shard, ids = faiss.deserialize_index(empty), []
    if shard.ntotal or not n:
        yield _ready(shard, kind), np.concatenate(ids or [np.zeros(0, np.int64)]).astype(np.int64), kind


def _trained_ivf(source: VectorSource, seed: int) -> faiss.Index:
    nlist = ivf_lists(source.count)
    codes = f"PQ{source.dim // 4}x4fs" if source.dim % 4 == 0 else "SQ8"
    index = faiss.index_factory(source.dim, f"IVF{nlist},{codes},Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.seed = seed
    # k-means needs tens of points per list, not all of them
    index.train(np.ascontiguousarray(source.sample(min(source.count, _TRAIN_PER_LIST * nlist), seed),
                                     dtype=np.float32))
    return index


def _ready(shard: faiss.Index, kind: str) -> faiss.Index:
    if kind == "ivf":
        _set_search_params(shard)
    return shard


def _collect(shards: Iterator) -> tuple[list, str]:
    """Every shard of a build, held in memory, and the kind built."""
    out, kind = [], "flat"
    for index, ids, kind in shards:
        out.append((index, ids))
    return out, kind


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
        yield build_binary(codes), ids

    [index], ids = _cached(folder, method, {"data_version": version, "method": method}, build,
                           faiss.read_index_binary, faiss.write_index_binary, save)
    return BinaryIndex(index, ids)


def vector_index(folder: Path, model: str, kind: str, version: int, source: Callable[[], VectorSource],
                 save: bool = True) -> VectorIndex:
    """The FAISS index over ``model``'s embeddings in ``folder``, loaded, or rebuilt from ``source()`` (a
    ``VectorSource``) if stale: shard by shard, each written to ``folder`` (where ``save``) before the next."""
    built_kind = {}

    def build():
        for index, ids, built_kind["kind"] in build_shards(source(), kind):
            yield index, ids
            del index, ids  # the next shard is built while the caller has let go of this one

    stamp = {"data_version": version, "model": model, "kind": kind}
    shards, ids = _cached(folder, f"embedding-{file_stem(model)}", stamp, build, faiss.read_index,
                          faiss.write_index, save)
    actual = "flat" if isinstance(shards[0], faiss.IndexFlat) else "ivf"
    for shard in shards:
        if actual == "ivf":
            _set_search_params(shard)
    return VectorIndex(_joined(shards), ids, built_kind.get("kind", actual))


def _joined(shards: list[faiss.Index]) -> faiss.Index:
    """One index searching every shard (in threads), numbering rows across them in order."""
    if len(shards) == 1:
        return shards[0]
    joined = faiss.IndexShards(shards[0].d, True, True)  # threaded, successive ids
    for shard in shards:
        joined.add_shard(shard)  # FAISS's wrapper keeps a reference to each shard
    return joined


def _cached(folder: Path, name: str, stamp: dict, build: Callable, read: Callable, write: Callable,
            save: bool) -> tuple[list, np.ndarray]:
    """([shard indexes], ids) from ``folder/name.*`` if its stamp matches, else built by ``build()`` (which
    yields (shard, ids) pairs), each shard saved (where ``save``) and let go before the next is built,
    then read back."""
    stamp_file, ids_file = folder / f"{name}.json", folder / f"{name}.ids.npy"
    try:
        saved = json.loads(stamp_file.read_text())
        count = saved.pop("shards", 1)
        if saved == stamp:
            return [read(str(_shard_file(folder, name, n))) for n in range(count)], np.load(ids_file)
    except (OSError, ValueError, RuntimeError):
        pass  # missing or damaged: rebuild below
    if save:
        try:
            return _build_files(folder, name, stamp, build, read, write)
        except OSError:
            pass  # a derived file that cannot be kept (full disk, no permission) is built in memory each time
    shards, ids = zip(*build())
    return list(shards), np.concatenate(ids)


def _build_files(folder: Path, name: str, stamp: dict, build: Callable, read: Callable, write: Callable):
    folder.mkdir(exist_ok=True)
    # the stamp goes last: a crash in between leaves a stale stamp, so the next open rebuilds
    ids, count = [], 0
    for count, (index, shard_ids) in enumerate(build(), 1):
        _replace(_shard_file(folder, name, count - 1), lambda tmp, index=index: write(index, tmp))
        ids.append(shard_ids)
        del index  # one shard in memory at a time
    ids = np.concatenate(ids)
    _replace(folder / f"{name}.ids.npy", lambda tmp: _save_npy(tmp, ids))
    _replace(folder / f"{name}.json", lambda tmp: Path(tmp).write_text(json.dumps({**stamp, "shards": count})))
    for extra in folder.glob(f"{name}.*.index"):  # shards of an earlier, larger build
        number = extra.name[len(name) + 1 : -len(".index")]
        if number.isdigit() and int(number) >= count:
            extra.unlink(missing_ok=True)
    return [read(str(_shard_file(folder, name, n))) for n in range(count)], ids


def _shard_file(folder: Path, name: str, shard: int) -> Path:
    """Shard 0 is ``name.index`` (an index of one shard keeps the single-file layout), shard n ``name.n.index``."""
    return folder / (f"{name}.index" if shard == 0 else f"{name}.{shard}.index")


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
