"""The per-file stage: read once, digest the bytes, decode once, then hash and (when
embedding) make the network input from that one decode. Runs in worker processes,
which on CPU also run the network on their own files (``EmbedJob``): no pixels
cross between processes and every core does whole images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from simsearch.errors import ImageError
from simsearch.hashing import image_hashes
from simsearch.imageio import decode
from simsearch.models import model_input
from simsearch.schema import FAILED, OK


@dataclass(frozen=True)
class Task:
    path: str  # on disk
    relpath: str
    size: int
    mtime_ns: int
    known_sha256: str | None  # the stored digest of a changed file, to skip re-decoding same bytes
    full_decode: bool
    max_pixels: int
    embed_size: int | None = None  # side of the embedder's input, when embedding


@dataclass(frozen=True)
class Result:
    relpath: str
    size: int
    mtime_ns: int
    status: str  # ok, failed, or "same" (bytes unchanged: only size and mtime are updated)
    columns: dict  # image columns to write
    error: tuple[str, str] | None = None  # (kind, message) for a failure
    pixels: np.ndarray | None = None  # the embedder's input (uint8 HWC), when the parent embeds
    vector: np.ndarray | None = None  # the embedding, when a worker embedded the image


@dataclass(frozen=True)
class EmbedJob:
    """What a worker needs to make its own CPU embedder (ONNX Runtime, from the cached graph)."""

    model: str
    weights: str | None
    batch_size: int
    threads: int


_worker_embedders: dict = {}


def extract(task: Task) -> Result:
    try:
        with open(task.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return _failed(task, None, "unreadable", f"cannot read file: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if sha == task.known_sha256:
        return Result(task.relpath, len(data), task.mtime_ns, "same", {})
    try:
        decoded = decode(data, full=task.full_decode, max_pixels=task.max_pixels)
    except ImageError as exc:
        return _failed(task, sha, exc.kind, str(exc))
    columns = {
        "sha256": sha,
        "pixel_digest": decoded.pixel_digest,
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
        "mode": decoded.mode,
        **image_hashes(decoded.image),
    }
    pixels = model_input(decoded.image, task.embed_size) if task.embed_size else None
    return Result(task.relpath, len(data), task.mtime_ns, OK, columns, pixels=pixels)


def extract_many(tasks: list[Task], job: EmbedJob | None = None) -> list[Result]:
    results = [extract(task) for task in tasks]
    todo = [n for n, r in enumerate(results) if r.pixels is not None]
    if job is None or not todo:
        return results
    if job not in _worker_embedders:  # once per worker process
        from simsearch.models import create_embedder  # noqa: PLC0415 - only in embedding workers

        _worker_embedders[job] = create_embedder(job.model, weights=job.weights, backend="onnx",
                                                 batch_size=job.batch_size, threads=job.threads)
    vectors = _worker_embedders[job].encode_arrays(np.stack([results[n].pixels for n in todo]))
    for n, vector in zip(todo, vectors):
        results[n] = replace(results[n], pixels=None, vector=vector)
    return results


def _failed(task: Task, sha: str | None, kind: str, message: str) -> Result:
    return Result(task.relpath, task.size, task.mtime_ns, FAILED, {"sha256": sha}, (kind, message))

