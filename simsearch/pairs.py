"""Candidate duplicate pairs, generated generously, and the features each pair is decided on.

Candidates: every image's nearest embedding neighbours, every pair whose pHash is close under
some rotation or flip, and every pair with equal bytes or equal decoded pixels. Features are
cheap to compute for all of them at once (no image is decoded here):

- ``cosine``: embedding similarity;
- ``margin``: the cosine less the larger of the two images' similarity to their ``DENSITY_K``-th
  neighbour, so that a pair inside a dense burst of similar photos needs to stand out of it;
- ``phash``: the least pHash distance over the 8 rotations and flips (bits / 64);
- ``dhash``, ``ahash``: distances of the unrotated hashes (bits / 64), or the pHash distance where
  the pair is closest turned or flipped;
- ``aspect``: |log| of the aspect ratios' quotient, the rotated one if closer;
- ``area``: |log| of the pixel counts' quotient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from .hamming import hamming_join
from .hashing import DIHEDRAL, to_uint64
from .reads import Reads
from .schema import OK, Image

NEIGHBOURS = 30  # embedding neighbours per image taken as candidates
DENSITY_K = 20  # the neighbour whose similarity measures how crowded an image's surroundings are (beyond most groups)
CANDIDATE_PHASH = 8  # dihedral pHash distance up to which a pair is a candidate
EXACT_KNN_BELOW = 20_000  # exact neighbour search below this many vectors; IVF over PCA above
_PCA_DIM = 256
_REFINE = 2  # approximate candidates re-ranked exactly, per neighbour wanted
_SAME_CODE_CAP = 64  # rows per hash value paired (more share one value only in degenerate images)
_BLOCK = 1024
_PAIR_BLOCK = 16_384
FEATURES = ("cosine", "margin", "phash", "dhash", "ahash", "aspect", "area")


@dataclass
class Collection:
    """What pair decisions read of every indexed image, row-aligned with ``ids`` (id order)."""

    ids: np.ndarray
    sha256: list
    pixel_digest: list
    dihedral: np.ndarray  # (n, 8) uint64, zeros where missing
    dhash: np.ndarray
    ahash: np.ndarray
    width: np.ndarray
    height: np.ndarray
    vectors: np.ndarray | None  # (n, d) float32 unit vectors; rows without one are zeros
    has_vector: np.ndarray  # bool (n,)


@dataclass
class Pairs:
    """Candidate pairs (rows into the collection, ``left < right``) with their features."""

    left: np.ndarray
    right: np.ndarray
    exact: np.ndarray  # bool: same bytes or same decoded pixels
    features: np.ndarray  # (pairs, len(FEATURES)) float64

    def feature(self, name: str) -> np.ndarray:
        return self.features[:, FEATURES.index(name)]


def load_collection(reads: Reads, model: str | None) -> Collection:
    with reads.engine.connect() as conn:
        rows = conn.execute(select(Image.id, Image.sha256, Image.pixel_digest, Image.phash_dihedral, Image.dhash,
                                   Image.ahash, Image.width, Image.height)
                            .where(Image.status == OK).order_by(Image.id)).all()
    n = len(rows)
    ids = np.array([r.id for r in rows], dtype=np.int64)
    dihedral = np.zeros((n, len(DIHEDRAL)), dtype=np.uint64)
    for k, r in enumerate(rows):
        if r.phash_dihedral is not None:
            dihedral[k] = np.frombuffer(r.phash_dihedral, dtype="<u8")
    vectors, has = None, np.zeros(n, dtype=bool)
    if model is not None:
        vec_ids, vectors = reads.vectors(model)
        at = np.searchsorted(ids, vec_ids)
        has[at] = True
        if len(vec_ids) < n:  # rows without a vector get zeros; where every image has one, no second copy
            vectors, embedded = np.zeros((n, vectors.shape[1]), dtype=np.float32), vectors
            vectors[at] = embedded
    return Collection(ids, [r.sha256 for r in rows], [r.pixel_digest for r in rows], dihedral,
                      to_uint64([r.dhash or 0 for r in rows]), to_uint64([r.ahash or 0 for r in rows]),
                      np.array([r.width or 1 for r in rows], dtype=np.float64),
                      np.array([r.height or 1 for r in rows], dtype=np.float64), vectors, has)


def candidate_pairs(col: Collection) -> Pairs:
    """Every candidate pair of the collection, with its features."""
    return pair_features(col, *candidate_search(col))


def candidate_search(col: Collection) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The expensive part of ``candidate_pairs``: the pairs (``left < right``, rows), every row's crowding, and
    each pair's cosine where the neighbour search found it (NaN where it did not)."""
    n = len(col.ids)
    density = np.zeros(n)
    sha_left, sha_right, sha_big = _equal_pairs(col.sha256)
    px_left, px_right, px_big = _equal_pairs(col.pixel_digest)
    parts = [(sha_left, sha_right), (px_left, px_right), _dihedral_pairs(col.dihedral)]
    parts = [(a, b, np.full(len(a), np.nan)) for a, b in parts]
    if col.vectors is not None and col.has_vector.sum() > 1:
        left, right, sims, density = _neighbour_pairs(col)
        parts.insert(0, (left, right, sims))  # first: their similarity is already known
    left = np.concatenate([p[0] for p in parts]).astype(np.int64)
    right = np.concatenate([p[1] for p in parts]).astype(np.int64)
    sims = np.concatenate([p[2] for p in parts])
    if sha_big or px_big:
        to_left, to_right = _to_hubs(left, right, sha_big + px_big, n)
        left, right = np.concatenate([left, to_left]), np.concatenate([right, to_right])
        sims = np.concatenate([sims, np.full(len(to_left), np.nan)])
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    keep = lo != hi
    key, first = np.unique(lo[keep] * n + hi[keep], return_index=True)
    return key // n, key % n, density, sims[keep][first]


def pair_features(col: Collection, left: np.ndarray, right: np.ndarray, density: np.ndarray,
                  known: np.ndarray | None = None) -> Pairs:
    """Features of the pairs (``left``, ``right``); ``known``: their cosines where already computed (else NaN)."""
    exact = np.zeros(len(left), dtype=bool)
    for values in (col.sha256, col.pixel_digest):
        codes = _value_codes(values)
        exact |= (codes[left] == codes[right]) & (codes[left] >= 0)
    feats = np.zeros((len(left), len(FEATURES)))
    if col.vectors is not None:
        cos = _cosines(col, left, right, known)
        missing = ~(col.has_vector[left] & col.has_vector[right])
        cos[missing] = 0.0
        feats[:, 0] = cos
        feats[:, 1] = np.where(missing, -1.0, cos - np.maximum(density[left], density[right]))
    distances = np.bitwise_count(col.dihedral[left][:, :1] ^ col.dihedral[right]).astype(np.float64)
    phash = distances.min(axis=1)
    feats[:, 2] = phash / 64.0
    # dHash and aHash are not rotation-invariant: for a pair closest when turned or flipped, they
    # say nothing, and take the pHash distance instead
    turned = distances[:, 0] > phash
    for column, codes in ((3, col.dhash), (4, col.ahash)):
        feats[:, column] = np.where(turned, phash, np.bitwise_count(codes[left] ^ codes[right])) / 64.0
    ar = np.log(col.width / col.height)
    feats[:, 5] = np.minimum(np.abs(ar[left] - ar[right]), np.abs(ar[left] + ar[right]))
    area = np.log(col.width * col.height)
    feats[:, 6] = np.abs(area[left] - area[right])
    return Pairs(left, right, exact, feats)


def _cosines(col: Collection, left: np.ndarray, right: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    cos = np.full(len(left), np.nan) if known is None else known.astype(np.float64)
    todo = np.flatnonzero(np.isnan(cos))
    for start in range(0, len(todo), _PAIR_BLOCK):  # blocks: never two (pairs x dim) copies of the vectors
        at = todo[start : start + _PAIR_BLOCK]
        cos[at] = np.einsum("ij,ij->i", col.vectors[left[at]], col.vectors[right[at]])
    return cos


def _value_codes(values: list) -> np.ndarray:
    """Each value as a number, equal for equal values; -1 for a missing one."""
    numbers: dict = {}
    return np.array([-1 if v is None else numbers.setdefault(v, len(numbers)) for v in values], dtype=np.int64)


def _equal_pairs(values: list) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Pairs of rows with equal, non-null values: every pair within a group of up to ``_SAME_CODE_CAP`` rows;
    in a larger one (a placeholder photo thousands of listings share), each row with the group's first
    ``_SAME_CODE_CAP`` rows, its hubs: every member then matches all hubs, which keeps the group whole
    (``simsearch.decide.star_groups``), in n x 64 pairs instead of n^2 / 2 (3,000 copies took 21 s and
    1.7 GB; 50,000 would not fit in memory). Also returns the larger groups' rows, hubs first."""
    by_value: dict = {}
    for row, v in enumerate(values):
        if v is not None:
            by_value.setdefault(v, []).append(row)
    left, right, big = [], [], []
    for rows in by_value.values():
        if len(rows) < 2:
            continue
        rows = np.array(rows, dtype=np.int64)
        if len(rows) > _SAME_CODE_CAP:
            big.append(rows)
        a, b = np.triu_indices(len(rows), 1) if len(rows) <= _SAME_CODE_CAP else _to_first(len(rows), _SAME_CODE_CAP)
        left.append(rows[a])
        right.append(rows[b])
    if not left:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), big
    return np.concatenate(left), np.concatenate(right), big


def _to_first(n: int, hubs: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs joining each of ``n`` items to each of the first ``hubs`` (hub pairs once)."""
    a, b = np.triu_indices(hubs, 1)
    rest = np.arange(hubs, n)
    return np.concatenate([a, np.tile(np.arange(hubs), len(rest))]), np.concatenate([b, np.repeat(rest, hubs)])


def _to_hubs(left: np.ndarray, right: np.ndarray, groups: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate pair joining an image to a member of a large equal group (``_equal_pairs``), the
    pairs of that image with the group's hubs: copies of one file decide alike, so an image matched to one
    copy is matched to the hubs too, and its group takes in the others (each matches every hub)."""
    group_of = np.full(n, -1, dtype=np.int64)
    for g, rows in enumerate(groups):
        group_of[rows] = g
    ends = np.stack([np.where(group_of[side] >= 0, -1 - group_of[side], side) for side in (left, right)], axis=1)
    across = (ends[:, 0] != ends[:, 1]) & ((ends[:, 0] < 0) | (ends[:, 1] < 0))
    out_left, out_right = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for a, b in np.unique(ends[across], axis=0).tolist():
        rows_a = groups[-1 - a][:_SAME_CODE_CAP] if a < 0 else np.array([a])
        rows_b = groups[-1 - b][:_SAME_CODE_CAP] if b < 0 else np.array([b])
        out_left.append(np.repeat(rows_a, len(rows_b)))
        out_right.append(np.tile(rows_b, len(rows_a)))
    return np.concatenate(out_left), np.concatenate(out_right)


def _dihedral_pairs(dihedral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of rows where one's pHash is within ``CANDIDATE_PHASH`` of the other's under some
    rotation or flip: each image's own code against every code of every image."""
    have = np.flatnonzero(dihedral.any(axis=1))
    if len(have) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    own_values, own_inverse = np.unique(dihedral[have, 0], return_inverse=True)
    all_values, all_inverse = np.unique(dihedral[have].reshape(-1), return_inverse=True)
    qu, du = hamming_join(own_values, all_values, CANDIDATE_PHASH)
    own_owners, own_starts = _owners_by_value(own_inverse, have)
    all_owners, all_starts = _owners_by_value(all_inverse, np.repeat(have, dihedral.shape[1]))
    # most values have one owner: those pairs map to rows at once, the others one by one
    single = (np.diff(own_starts)[qu] == 1) & (np.diff(all_starts)[du] == 1)
    left, right = [own_owners[own_starts[qu[single]]]], [all_owners[all_starts[du[single]]]]
    for u, v in zip(qu[~single].tolist(), du[~single].tolist()):
        rows_u = np.unique(own_owners[own_starts[u] : own_starts[u + 1]])[:_SAME_CODE_CAP]
        rows_v = np.unique(all_owners[all_starts[v] : all_starts[v + 1]])[:_SAME_CODE_CAP]
        left.append(np.repeat(rows_u, len(rows_v)))
        right.append(np.tile(rows_v, len(rows_u)))
    a, b = np.concatenate(left), np.concatenate(right)
    keep = a != b
    return a[keep], b[keep]


def _owners_by_value(inverse: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owners sorted by value, starts): the rows holding value ``u`` are ``owners[starts[u]:starts[u + 1]]``."""
    order = np.argsort(inverse, kind="stable")
    return owner[order], np.searchsorted(inverse[order], np.arange(inverse.max() + 2))


def _neighbour_pairs(col: Collection) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, cosine) of each embedded image's ``NEIGHBOURS`` nearest neighbours, and every
    row's similarity to its ``DENSITY_K``-th neighbour."""
    import faiss  # noqa: PLC0415 - loads on use

    rows = np.flatnonzero(col.has_vector)
    vectors = np.ascontiguousarray(col.vectors[rows])
    k = min(NEIGHBOURS + 1, len(rows))
    index = _knn_index(vectors, faiss)
    left, right, cosines = [], [], []
    density = np.zeros(len(col.ids))
    for start in range(0, len(rows), _BLOCK):
        sims, found = index.search(vectors[start : start + _BLOCK], k)  # exact similarities, best first
        query = np.arange(start, start + len(found))
        # the k-th neighbour other than the image itself (column 0 is usually itself)
        density[rows[query]] = np.where(found[:, min(DENSITY_K, k - 1)] >= 0, sims[:, min(DENSITY_K, k - 1)], -1.0)
        ok = (found >= 0) & (found != query[:, None])
        left.append(rows[np.repeat(query, ok.sum(axis=1))])
        right.append(rows[found[ok]])
        cosines.append(sims[ok].astype(np.float64))
    return np.concatenate(left), np.concatenate(right), np.concatenate(cosines), density


def _knn_index(vectors: np.ndarray, faiss):
    """Exact inner product for small collections. Above, an inverted file of 4-bit PQ codes over
    PCA-reduced vectors (fast scan), its best ``REFINE``-fold candidates re-ranked on the full
    vectors, so similarities come back exact."""
    n, dim = vectors.shape
    if n < EXACT_KNN_BELOW:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index
    nlist = int(4 * np.sqrt(n))
    reduced = min(_PCA_DIM, dim - dim % 2)
    coarse = faiss.index_factory(dim, f"PCA{reduced},IVF{nlist},PQ{reduced // 2}x4fs", faiss.METRIC_INNER_PRODUCT)
    coarse.train(vectors[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
    faiss.extract_index_ivf(coarse).nprobe = max(16, nlist // 8)  # an eighth of the lists
    index = faiss.IndexRefineFlat(coarse)
    index.k_factor = _REFINE
    index.add(vectors)
    return index


def row_density(col: Collection, rows: np.ndarray) -> np.ndarray:
    """Every row's crowding measure as ``candidate_pairs`` computes it, for only the given rows
    (exact: the similarity of each to its ``DENSITY_K``-th nearest embedded image)."""
    density = np.zeros(len(col.ids))
    if col.vectors is None:
        return density
    embedded = col.vectors[col.has_vector]
    for row in rows:
        if col.has_vector[row]:
            sims = np.sort(embedded @ col.vectors[row])[::-1]
            density[row] = sims[min(DENSITY_K, len(sims) - 1)]
    return density
