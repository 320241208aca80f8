"""Nearest-neighbour search: cosine over embeddings, Hamming over hashes, with tag filters."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import store
from .errors import InvalidArgument
from .hamming import HASH_BITS
from .hashing import DIHEDRAL, hash_image
from .imageio import Decoded, decode, decode_file
from .names import SEARCH_METHODS
from .reads import ImageRecord, Reads


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


def decode_query(reads: Reads, image) -> Decoded:
    """A query image (a path or bytes) decoded exactly the way the index decodes."""
    if isinstance(image, bytes):
        return decode(image, full=reads.full_decode)
    return decode_file(os.fspath(image), full=reads.full_decode)


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


def search_hash(reads: Reads, image, by: str, k: int, max_distance: int | None) -> list[Match]:
    query = hash_query(reads, image)[by]
    ids, distances = reads.binary_index(by).search(query, k)
    records = reads.records(ids.tolist())
    return [Match(records[i], distance=int(d)) for i, d in zip(ids.tolist(), distances.tolist())
            if max_distance is None or d <= max_distance]


def search_embedding(reads: Reads, image, k: int, min_similarity: float | None, model: str | None,
                     rotations: bool, embedder, allowed: set[int] | None = None) -> list[Match]:
    model = reads.model(model)
    rgb = decode_query(reads, image).image
    variants = [dihedral(rgb, t) for t in DIHEDRAL] if rotations else [rgb]
    queries = embedder.encode(variants)
    index = reads.vector_index(model)
    fetch = k if allowed is None else min(len(index.ids), max(10 * k, 100))
    while True:  # with a tag filter, fetch more neighbours until k pass it or none are left
        ids, sims = index.search(queries, fetch)
        best: dict[int, float] = {}
        for i, sim in zip(ids.ravel().tolist(), sims.ravel().tolist()):
            if i >= 0 and (allowed is None or i in allowed) and sim > best.get(i, -2.0):
                best[i] = sim
        if allowed is None or len(best) >= k or fetch >= len(index.ids):
            break
        fetch = min(len(index.ids), fetch * 4)
    ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
    ranked = [(i, s) for i, s in ranked if min_similarity is None or s >= min_similarity]
    records = reads.records([i for i, _ in ranked])
    return [Match(records[i], similarity=round(s, 6)) for i, s in ranked]


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
