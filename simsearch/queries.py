"""Nearest-neighbour search: cosine over embeddings, Hamming over hashes, with tag filters."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from . import store
from .errors import ImageError, InvalidArgument
from .hamming import HASH_BITS
from .hashing import DIHEDRAL, hash_image
from .imageio import Decoded, decode, decode_file, from_memory
from .names import SEARCH_METHODS
from .reads import ImageRecord, Reads

QUERY_BATCH = 64  # bulk queries encoded and searched together


@dataclass(frozen=True)
class Match:
    """A search hit: Hamming ``distance`` for a hash search, cosine ``similarity`` for embeddings."""

    image: ImageRecord
    distance: int | None = None
    similarity: float | None = None


def checked_search(reads: Reads, by: str, k: int, max_distance: int | None, min_similarity: float | None) -> str:
    """The search method ``by`` resolves to, after every argument of a search is checked."""
    if k < 1:
        raise InvalidArgument(f"k must be at least 1, got {k}")
    check_distance(max_distance)
    check_similarity(min_similarity)
    return resolve_method(reads, by)


def check_distance(max_distance: int | None) -> None:
    if max_distance is not None and not 0 <= max_distance < HASH_BITS:
        raise InvalidArgument(f"max distance must be between 0 and {HASH_BITS - 1}, got {max_distance}")


def check_similarity(min_similarity: float | None) -> None:
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise InvalidArgument(f"min similarity must be between -1 and 1, got {min_similarity}")


def check_query(image) -> None:
    """A query is a path, bytes, a PIL image or a numpy array."""
    if not isinstance(image, (bytes, str, os.PathLike, np.ndarray)) and not hasattr(image, "getbands"):  # not PIL
        raise InvalidArgument(f"a query is a path, bytes, a PIL image or a numpy array, not {type(image).__name__}")


def as_queries(images) -> list:
    """``images`` as a list of queries: one query (a path, bytes, a PIL image, an HxW or HxWxC array) is a list
    of one, where iterating it would give its letters, bytes or rows; an NxHxWxC array is N queries."""
    single = isinstance(images, (str, bytes, os.PathLike)) or hasattr(images, "getbands") or (
        isinstance(images, np.ndarray) and images.ndim in (2, 3))
    return [images] if single else list(images)


def decode_query(reads: Reads, image) -> Decoded:
    """A query image (a path, bytes, a PIL image or a numpy array) decoded exactly the way the index decodes
    (without the pixel digest: a query needs only its pixels)."""
    check_query(image)
    if isinstance(image, bytes):
        return decode(image, full=reads.full_decode, digest=False)
    if isinstance(image, (str, os.PathLike)):
        return decode_file(os.fspath(image), full=reads.full_decode, digest=False)
    return from_memory(image)


def hash_query(reads: Reads, image) -> dict[str, int]:
    """The four hashes of a query image, decoded the way the index decodes."""
    return hash_image(decode_query(reads, image).image)


def resolve_method(reads: Reads, by: str) -> str:
    """``auto`` becomes ``embedding`` where the index has embeddings, else ``phash``."""
    if by not in SEARCH_METHODS:
        raise InvalidArgument(f"unknown search method {by!r}; choose one of {', '.join(SEARCH_METHODS)}")
    if by == "auto":
        return "embedding" if reads.embedding_models() else "phash"
    return by


def make_embedder(reads: Reads, model: str | None = None, **options):
    """The embedder that made the index's ``model`` vectors, checked against the stored spec."""
    from .models import create_embedder  # noqa: PLC0415 - torch / onnxruntime load on use

    model = reads.model(model)
    embedder = create_embedder(model, **options)
    store.check_spec(reads.embedding_models()[model], json.loads(embedder.stored_spec()), model, "embeddings")
    return embedder


@dataclass(frozen=True)
class QueryResult:
    """One query of a bulk search: its matches, or why it could not be run."""

    query: object
    matches: list[Match]
    error: ImageError | None = None


def search_many(reads: Reads, images: list, by: str, k: int, *, max_distance: int | None = None,
                min_similarity: float | None = None, model: str | None = None, rotations: bool = False,
                embedder=None, allowed: set[int] | None = None) -> list[QueryResult]:
    """Search every image in ``images``, ``QUERY_BATCH`` at a time: one encoding call and one FAISS call
    per batch. A query that cannot be read, or is no image at all, gets its error; the others go on."""
    results = []
    for start in range(0, len(images), QUERY_BATCH):
        chunk = images[start : start + QUERY_BATCH]
        decoded, errors = [], {}
        for n, image in enumerate(chunk):
            try:
                decoded.append(decode_query(reads, image).image)
            except ImageError as exc:
                errors[n] = exc
            except InvalidArgument as exc:  # not an image at all (a None among paths): its own error, as a bad file's
                errors[n] = ImageError("not_an_image", str(exc))
        if by == "embedding":
            found = _embedding_batch(reads, decoded, k, min_similarity, model, rotations, embedder, allowed)
        else:
            found = _hash_batch(reads, decoded, by, k, max_distance)
        found = iter(found)
        results += [QueryResult(q, [], errors[n]) if n in errors else QueryResult(q, next(found))
                    for n, q in enumerate(chunk)]
    return results


def _hash_batch(reads: Reads, images: list, by: str, k: int, max_distance: int | None) -> list[list[Match]]:
    if not images:
        return []
    ids, distances = reads.binary_index(by).search([hash_image(im)[by] for im in images], k)
    records = reads.records(sorted({i for i in ids.ravel().tolist() if i >= 0}))
    return [[Match(records[i], distance=int(d)) for i, d in zip(row_ids, row_dist)
             if i >= 0 and (max_distance is None or d <= max_distance)]
            for row_ids, row_dist in zip(ids.tolist(), distances.tolist())]


def _embedding_batch(reads: Reads, images: list, k: int, min_similarity: float | None, model: str | None,
                     rotations: bool, embedder, allowed: set[int] | None) -> list[list[Match]]:
    if not images:
        return []
    model = reads.model(model)
    views = len(DIHEDRAL) if rotations else 1
    vectors = embedder.encode([dihedral(im, t) for im in images for t in DIHEDRAL] if rotations else images)
    index = reads.vector_index(model)
    fetch = k if allowed is None else min(len(index.ids), max(10 * k, 100))
    best: dict[int, dict[int, float]] = {}
    todo = list(range(len(images)))
    while todo:  # with a tag filter, fetch more neighbours for the queries that have fewer than k
        rows = np.concatenate([np.arange(q * views, (q + 1) * views) for q in todo])
        ids, sims = index.search(vectors[rows], fetch)
        for n, q in enumerate(todo):
            best[q] = _best(ids[n * views : (n + 1) * views], sims[n * views : (n + 1) * views], allowed)
        if allowed is None or fetch >= len(index.ids):
            break
        todo = [q for q in todo if len(best[q]) < k]
        fetch = min(len(index.ids), fetch * 4)
    ranked = [[(i, s) for i, s in sorted(best[q].items(), key=lambda item: -item[1])[:k]
               if min_similarity is None or s >= min_similarity] for q in range(len(images))]
    records = reads.records(sorted({i for found in ranked for i, _ in found}))
    return [[Match(records[i], similarity=round(s, 6)) for i, s in found] for found in ranked]


def _best(ids: np.ndarray, sims: np.ndarray, allowed: set[int] | None) -> dict[int, float]:
    """Image id -> its best similarity over a query's views, among the ``allowed``."""
    best: dict[int, float] = {}
    for i, sim in zip(ids.ravel().tolist(), sims.ravel().tolist()):
        if i >= 0 and (allowed is None or i in allowed) and sim > best.get(i, -2.0):
            best[i] = sim
    return best


def dihedral(rgb, transform: tuple[bool, bool, bool]):
    """``rgb`` under one of ``hashing.DIHEDRAL``'s transforms (transpose, flip rows, flip columns)."""
    from PIL import Image as PILImage  # noqa: PLC0415

    transpose, flip_rows, flip_cols = transform
    out = rgb.transpose(PILImage.Transpose.TRANSPOSE) if transpose else rgb
    if flip_rows:
        out = out.transpose(PILImage.Transpose.FLIP_TOP_BOTTOM)
    if flip_cols:
        out = out.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    return out
