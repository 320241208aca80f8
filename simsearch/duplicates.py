"""Duplicate groups: exact copies, hash neighbours and embedding neighbours, and the
image each group keeps."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from .errors import InvalidArgument
from .hamming import connected_groups, hamming_edges
from .hashing import DIHEDRAL
from .queries import check_distance, check_similarity
from .reads import ImageRecord, Reads
from .schema import HASH_METHODS, OK, Image

# defaults chosen on the development duplicate set (see README, "Choosing thresholds")
DEFAULT_MAX_DISTANCE = {"phash": 2, "dhash": 1, "whash": 0, "ahash": 0}
DEFAULT_MIN_SIMILARITY = 0.98  # cosine, embeddings alone
AUTO_MAX_DISTANCE = 1  # pHash over the 8 rotations and flips, in --by auto
AUTO_MIN_SIMILARITY = 0.985  # cosine, in --by auto
DUPLICATE_METHODS = ("auto", "exact", "embedding") + HASH_METHODS


def duplicate_ids(reads: Reads, by: str = "auto", max_distance: int | None = None,
                  min_similarity: float | None = None, model: str | None = None) -> list[list[int]]:
    """Duplicate groups as lists of image ids, largest first (connected components of the pairs)."""
    if by not in DUPLICATE_METHODS:
        raise InvalidArgument(f"unknown duplicate method {by!r}; choose one of {', '.join(DUPLICATE_METHODS)}")
    check_distance(max_distance)
    check_similarity(min_similarity)
    with reads.engine.connect() as conn:
        rows = conn.execute(select(Image.id, Image.sha256, Image.pixel_digest, Image.phash_dihedral)
                            .where(Image.status == OK).order_by(Image.id)).all()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    edges = [equal_edges([r[1] for r in rows]), equal_edges([r[2] for r in rows])]
    if by in HASH_METHODS:
        _, codes = reads.hash_codes(by)
        edges.append(hamming_edges(codes, DEFAULT_MAX_DISTANCE[by] if max_distance is None else max_distance))
    if by == "auto":
        distance = AUTO_MAX_DISTANCE if max_distance is None else max_distance
        edges.append(dihedral_edges([r[3] for r in rows], distance))
    if by == "embedding" or (by == "auto" and reads.embedding_models()):
        default = DEFAULT_MIN_SIMILARITY if by == "embedding" else AUTO_MIN_SIMILARITY
        edges.append(_embedding_edges(reads, ids, model, default if min_similarity is None else min_similarity))
    i = np.concatenate([e[0] for e in edges])
    j = np.concatenate([e[1] for e in edges])
    return [ids[g].tolist() for g in connected_groups(len(ids), i, j)]


def keep_first(reads: Reads, group: list[int]) -> list[ImageRecord]:
    """A group's records, the one to keep first: the largest image, then the largest file, then
    the oldest, then by path."""
    records = reads.records(group)
    return sorted(records.values(), key=keeper_order)


def keeper_order(r: ImageRecord) -> tuple:
    return -(r.width * r.height), -r.size, r.mtime_ns, r.path


def imagededup_map(reads: Reads, groups: list[list[ImageRecord]]) -> dict[str, list[str]]:
    """imagededup's ``{path: [paths of its duplicates]}`` map over every indexed image."""
    mapping = {r.path: [] for r in reads.ordered(reads.image_ids())}
    for group in groups:
        for rec in group:
            mapping[rec.path] = [o.path for o in group if o is not rec]
    return mapping


def _embedding_edges(reads: Reads, ids: np.ndarray, model: str | None, min_similarity: float):
    """Pairs of rows of ``ids`` whose embeddings are at least ``min_similarity`` alike."""
    model = reads.model(model)
    vec_ids, vectors = reads.vectors(model)
    left, right = reads.vector_index(model).pairs(vectors, min_similarity)
    rows = np.searchsorted(ids, vec_ids)  # both in id order; every embedded image is in ids
    return rows[left], rows[right]


def dihedral_edges(packed: list[bytes | None], max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs whose pHash is within ``max_distance`` under some rotation or flip of one of them."""
    n_variants = len(DIHEDRAL)
    have = [r for r, p in enumerate(packed) if p is not None]
    if not have:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.frombuffer(b"".join(packed[r] for r in have), dtype="<u8").astype(np.uint64)
    i, j = hamming_edges(codes, max_distance)
    owner = np.asarray(have, dtype=np.int64)
    a, b = owner[i // n_variants], owner[j // n_variants]
    keep = a != b
    return a[keep], b[keep]


def equal_edges(values: list) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking rows with equal, non-null values (a chain through each group)."""
    keyed = sorted((v, i) for i, v in enumerate(values) if v is not None)
    i, j = [], []
    for (va, ia), (vb, ib) in zip(keyed, keyed[1:]):
        if va == vb:
            i.append(ia)
            j.append(ib)
    return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64)
