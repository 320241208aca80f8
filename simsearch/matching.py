"""Duplicates of images that are not indexed (inventory matching): for each query image, the indexed images
that ``duplicates`` would decide duplicates of it had it been indexed, by the same calibrated models at a level.

A query's candidates are those an indexed image has (``simsearch.pairs``): its ``NEIGHBOURS`` nearest embedded
images, every image whose pHash is within ``CANDIDATE_PHASH`` bits of its own under some rotation or flip
(either way round), and the images with its bytes or decoded pixels. Each pair's features are those it would
have with the query added to the collection: the query's crowding is its ``DENSITY_K``-th nearest indexed
image, and each candidate counts the query among its own neighbours. The query comes last, as a newly indexed
file would. Borderline pairs are verified with the query's keypoints and the candidate's file; verifications
``duplicates`` kept are used (a query whose bytes are indexed), and none are written. Below
``EXACT_KNN_BELOW`` images the decision is the one ``duplicates`` makes after indexing the query; above it,
``duplicates`` searches neighbours approximately while this compares the query with every image.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from .decide import Decider, check_level
from .duplicates import Decided, Pair, kept_verifications, tell_unreadable
from .errors import ImageError, InvalidArgument
from .hashing import to_uint64, work_hashes, work_image
from .imageio import Decoded, decode, from_memory, pixel_digest_of
from .margins import picture_size
from .pairs import (
    CANDIDATE_PHASH,
    DENSITY_K,
    NEIGHBOURS,
    Collection,
    load_collection,
    pair_features,
)
from .queries import QUERY_BATCH, check_query
from .reads import ImageRecord, Reads
from .verify import Keypoints, image_keypoints, keypoints

KEYPOINT_CACHE = 2048  # indexed images whose keypoints a catalogue keeps for later queries (about 100 KB each)
_BLOCK = 256  # rows whose nearest others one matrix product finds


@dataclass(frozen=True)
class QueryDuplicates:
    """One query's duplicates among the indexed images, most probable first: each a ``Pair`` whose ``a`` is the
    indexed image and ``b`` the query (its transform maps the query onto the indexed image); or why the
    query could not be read."""

    query: object
    duplicates: list[Pair]
    error: ImageError | None = None


@dataclass
class _Query:
    record: ImageRecord  # the query as a pair shows it: id -1, its path or how it was given
    data: bytes | None  # the file's bytes (None: an image in memory)
    decoded: Decoded
    hashes: dict
    vector: np.ndarray | None = None

    def keypoints(self, full_decode: bool) -> Keypoints | None:
        """Its keypoints as verification reads a file: a JPEG decoded DCT-scaled reads its luminance alone, so
        it is decoded again; any other image's grey pixels are its decoded pixels converted, as decoding it
        grey converts them."""
        grey = self.decoded.image.convert("L")
        if self.data is not None and self.decoded.format == "JPEG" and not full_decode:
            try:
                grey = decode(self.data, grey=True).image
            except ImageError:
                return None
        return image_keypoints(grey, self.decoded.width)


class Catalogue:
    """What matching reads of the index, loaded once and kept by ``Index`` between calls while its data is
    unchanged: the collection (digests, hashes, sizes, vectors), the rows by digest, the indexed images' crowding,
    records and keypoints as queries reach them, and the verifications ``duplicates`` kept. Loading it is most of
    a single query's time on a large index (about 2 s at 100,000 images); a later call reuses it."""

    def __init__(self, reads: Reads, model: str | None):
        self.version = reads.data_version()  # read first: data written while loading makes the next call reload
        self.model = model
        self.col = load_collection(reads, model)
        self.kept = kept_verifications(reads, self.col)
        self.crowding = _Crowding(self.col)
        self.equal = {name: _rows_by_value(values) for name, values in (("sha256", self.col.sha256),
                                                                        ("pixels", self.col.pixel_digest))}
        self.records: dict[int, ImageRecord] = {}
        self.keypoints = _KeypointCache(reads.full_decode)
        self._lock = threading.Lock()  # a server's requests share a catalogue

    @classmethod
    def current(cls, reads: Reads, model: str | None, held: Catalogue | None) -> Catalogue:
        """``held`` where it still shows the index's data for ``model``, else a catalogue loaded now."""
        if held is not None and held.model == model and held.version == reads.data_version():
            return held
        return cls(reads, model)

    def add_records(self, reads: Reads, rows: list[np.ndarray]) -> None:
        """The records of these rows' images, those not read before."""
        with self._lock:
            wanted = {int(i) for r in rows for i in self.col.ids[r]} - set(self.records)
            self.records.update(reads.records(sorted(wanted)))


def check_decision(level: str, cut: float | None) -> None:
    """A bad level or cut fails before anything is read."""
    check_level(level)
    Decider(level, cut=cut)


def duplicates_of(reads: Reads, catalogue: Catalogue, images: list, level: str = "copy", cut: float | None = None,
                  embedder=None) -> list[QueryDuplicates]:
    """Each of ``images`` (paths, bytes, PIL images or arrays) with the images of ``catalogue`` decided duplicates of
    it at ``level`` (cut: the level's calibrated one unless given), in order; a query that cannot be read gets its
    error and the others go on. Where the catalogue has vectors, ``embedder`` (the one that made them) encodes the
    queries."""
    check_decision(level, cut)
    col, crowding = catalogue.col, catalogue.crowding
    results = []
    # queries are read and decided on threads (decoding, keypoints and RANSAC release the GIL); the matrix
    # products are done here, a batch at a time, so that the threads do not start BLAS teams of their own
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(images), QUERY_BATCH):
            chunk = images[start : start + QUERY_BATCH]
            read = list(pool.map(lambda image: _read(image, reads.full_decode), chunk))
            ready = [q for q in read if isinstance(q, _Query)]
            sims: list[np.ndarray | None] = [None] * len(ready)
            if col.vectors is not None and ready:
                vectors = embedder.encode([q.decoded.image for q in ready])
                for query, vector in zip(ready, vectors):
                    query.vector = vector
                sims = list(crowding.similarities(vectors))
            rows = [_candidates(col, catalogue.equal, q, s) for q, s in zip(ready, sims)]
            crowding.prepare(rows)
            catalogue.add_records(reads, rows)
            found = pool.map(lambda task: _decide(reads, catalogue, *task, level, cut), zip(ready, sims, rows))
            results += [QueryDuplicates(image, [], query) if isinstance(query, ImageError) else
                        QueryDuplicates(image, next(found)) for image, query in zip(chunk, read)]
    return results


def _read(image, full_decode: bool) -> _Query | ImageError:
    """A query read as the indexer reads a file: its bytes' SHA-256, its pixels' digest, its hashes and size."""
    try:
        check_query(image)
    except InvalidArgument as exc:  # not an image at all (a None among paths): its own error, as a bad file's
        return ImageError("not_an_image", str(exc))
    data, name = None, "(image in memory)"
    try:
        if isinstance(image, (str, os.PathLike)):
            name = os.fspath(image)
            try:
                with open(name, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise ImageError("unreadable", f"cannot read file: {exc.strerror or exc}") from None
        elif isinstance(image, bytes):
            data, name = image, "(image bytes)"
        decoded = decode(data, full=full_decode) if data is not None else from_memory(image)
    except ImageError as exc:
        return exc
    grey = work_image(decoded.image)
    picture = picture_size(decoded.width, decoded.height, grey)
    sha = hashlib.sha256(data).hexdigest() if data is not None else ""
    where = os.path.abspath(name) if isinstance(image, (str, os.PathLike)) else name
    record = ImageRecord(-1, name, where, len(data) if data is not None else 0, decoded.width, decoded.height,
                         decoded.format, 0, sha, *picture)
    decoded = replace(decoded, pixel_digest=decoded.pixel_digest or pixel_digest_of(decoded.image))
    return _Query(record, data, decoded, work_hashes(grey))


class _Crowding:
    """How crowded the surroundings of indexed images are once a query joins them (``pairs``' density): each
    row's similarities to its nearest ``DENSITY_K`` others, computed once, with the query's put among them."""

    def __init__(self, col: Collection):
        self.col = col
        self.embedded = np.flatnonzero(col.has_vector)
        self.vectors = None
        if col.vectors is not None:  # the embedded rows' vectors (no copy where every row has one)
            self.vectors = col.vectors if col.has_vector.all() else np.ascontiguousarray(col.vectors[self.embedded])
        self._nearest: dict[int, np.ndarray] = {}

    def similarities(self, vectors: np.ndarray) -> np.ndarray:
        """Each vector's cosine with every row, (vectors, rows) (zero for rows without a vector)."""
        sims = np.zeros((len(vectors), len(self.col.ids)), dtype=np.float32)
        if self.vectors is not None and len(self.embedded):
            sims[:, self.embedded] = vectors @ self.vectors.T
        return sims

    def prepare(self, rows: list[np.ndarray]) -> None:
        """Find the nearest others of these rows (those not found before), a block of rows at a time."""
        if self.vectors is None:
            return
        todo = [r for r in np.unique(np.concatenate(rows or [np.zeros(0, np.int64)])).tolist()
                if r not in self._nearest and self.col.has_vector[r]]
        keep = min(DENSITY_K + 1, len(self.embedded))
        for start in range(0, len(todo), _BLOCK):
            block = todo[start : start + _BLOCK]
            sims = self.col.vectors[block] @ self.vectors.T
            top = -np.sort(-np.partition(sims, -keep, axis=1)[:, -keep:], axis=1)
            for row, nearest in zip(block, top):
                self._nearest[row] = nearest[1:]  # the first is the row itself

    def query(self, sims: np.ndarray) -> float:
        """The query's density: its ``DENSITY_K``-th nearest indexed image (the last where there are fewer)."""
        n = len(self.embedded)
        return float(-np.partition(-sims[self.embedded], min(DENSITY_K, n) - 1)[min(DENSITY_K, n) - 1]) if n else -1.0

    def row(self, row: int, query_sim: float) -> float:
        """Row ``row``'s density with the query (``query_sim`` from it) among its neighbours (``prepare`` first)."""
        others = np.sort(np.append(self._nearest[row], np.float32(query_sim)))[::-1]
        return float(others[min(DENSITY_K, len(self.embedded)) - 1])


def _rows_by_value(values: list) -> dict:
    """Each value's rows (missing values left out)."""
    rows: dict = {}
    for row, value in enumerate(values):
        if value:
            rows.setdefault(value, []).append(row)
    return rows


def _candidates(col: Collection, equal: dict[str, dict], query: _Query, sims: np.ndarray | None) -> np.ndarray:
    """The rows a query is paired with, in row order: its nearest embedded images, its dihedral pHash
    neighbours either way round, and its equal bytes or pixels (``equal``: rows by digest)."""
    found = np.zeros(len(col.ids), dtype=bool)
    if sims is not None and col.has_vector.any():
        embedded = np.flatnonzero(col.has_vector)
        nearest = min(NEIGHBOURS, len(embedded))
        found[embedded[np.argpartition(-sims[embedded], nearest - 1)[:nearest]]] = True
    codes = np.frombuffer(query.hashes["phash_dihedral"], dtype="<u8")
    if codes.any():
        own_to_theirs = np.bitwise_count(codes[0] ^ col.dihedral).min(axis=1)
        theirs_to_own = np.bitwise_count(col.dihedral[:, :1] ^ codes[None, :]).min(axis=1)
        have = col.dihedral.any(axis=1)
        found |= have & (np.minimum(own_to_theirs, theirs_to_own) <= CANDIDATE_PHASH)
    found[equal["sha256"].get(query.record.sha256, [])] = True
    found[equal["pixels"].get(query.decoded.pixel_digest, [])] = True
    return np.flatnonzero(found)


def _decide(reads: Reads, catalogue: Catalogue, query: _Query, sims: np.ndarray | None, rows: np.ndarray, level: str,
            cut: float | None) -> list[Pair]:
    """The query's candidate pairs (``rows``; ``sims``: its cosine with every row) decided as ``duplicates``
    decides them; those that are duplicates."""
    if not len(rows):
        return []
    col, crowding, records = catalogue.col, catalogue.crowding, catalogue.records
    small = _with_query(col, rows, query)
    density = np.zeros(len(rows) + 1)
    known = None
    if sims is not None:
        density = np.array([crowding.row(r, sims[r]) if col.has_vector[r] else 0.0 for r in rows.tolist()]
                           + [crowding.query(sims)])
        known = sims[rows].astype(np.float64)
    last = len(rows)  # the query: a newly indexed file comes last
    pairs = pair_features(small, np.arange(last), np.full(last, last), density, known)
    files = [records[int(i)] for i in col.ids[rows]] + [query.record]
    decider = Decider(level, cut=cut, embeddings=col.vectors is not None, full_decode=reads.full_decode,
                      verified=catalogue.kept.viewed_by(small.sha256))
    given = {n: (lambda record=record: catalogue.keypoints.get(record)) for n, record in enumerate(files[:last])}
    given[last] = lambda: query.keypoints(reads.full_decode)
    decisions = decider.decide(pairs, files, given=given)
    decided = Decided(small, decisions, {**{int(i): records[int(i)] for i in col.ids[rows]}, -1: query.record})
    tell_unreadable(decided)
    order = np.argsort(-decisions.score, kind="stable")
    return [decided.pair(k) for k in order.tolist() if decisions.score[k] >= decisions.cut]


def _with_query(col: Collection, rows: np.ndarray, query: _Query) -> Collection:
    """The collection's ``rows`` with the query after them (id -1)."""
    hashes = query.hashes
    vectors = None
    if col.vectors is not None:
        vectors = np.vstack([col.vectors[rows], query.vector[None, :].astype(np.float32)])
    return Collection(
        np.append(col.ids[rows], -1), [col.sha256[r] for r in rows] + [query.record.sha256],
        [col.pixel_digest[r] for r in rows] + [query.decoded.pixel_digest],
        np.vstack([col.dihedral[rows], np.frombuffer(hashes["phash_dihedral"], dtype="<u8")[None, :]]),
        np.append(col.dhash[rows], to_uint64([hashes["dhash"]])), np.append(col.ahash[rows], to_uint64([hashes["ahash"]])),
        np.append(col.width[rows], float(query.decoded.width)), np.append(col.height[rows], float(query.decoded.height)),
        vectors, np.append(col.has_vector[rows], vectors is not None))


class _KeypointCache:
    """Keypoints of indexed images (the mirror image's too), computed once for every query that verifies a pair
    with them; the ``KEYPOINT_CACHE`` most recently used are kept."""

    def __init__(self, full_decode: bool):
        self.full_decode = full_decode
        self._found: OrderedDict[int, Keypoints | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, record: ImageRecord) -> Keypoints | None:
        with self._lock:
            if record.id in self._found:
                self._found.move_to_end(record.id)
                return self._found[record.id]
        points = keypoints(record.abspath, full_decode=self.full_decode, max_pixels=record.max_pixels)
        with self._lock:
            self._found[record.id] = points
            if len(self._found) > KEYPOINT_CACHE:
                self._found.popitem(last=False)
        return points
