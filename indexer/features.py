"""The per-file stage: read once, digest the bytes, decode once, then hash and make
the embedder's and the tagger's inputs from that one decode. Runs in worker
processes, which on CPU also run the models on their own files (``ModelJobs``): no
pixels cross between processes and every core does whole images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from simsearch.errors import ImageError
from simsearch.hashing import work_hashes, work_image
from simsearch.imageio import decode
from simsearch.margins import picture_size
from simsearch.names import FAILED, OK
from simsearch.runtime import model_input
from simsearch.taggers import tag_input


@dataclass(frozen=True)
class Task:
    path: str  # on disk
    relpath: str
    size: int
    mtime_ns: int
    # digests whose stored features these bytes may take without decoding: the file's own (its mtime changed)
    # and those of indexed files of the same size (a folder moved, a file copied)
    reusable: frozenset[str]
    full_decode: bool
    max_pixels: int
    embed_size: int | None = None  # side of the embedder's input, when embedding
    tag_input: tuple | None = None  # (resize, size, max_size) of the tagger's input, when it has its own


@dataclass(frozen=True)
class Result:
    relpath: str
    size: int
    mtime_ns: int
    status: str  # ok, failed, or "same" (bytes a digest of ``Task.reusable``: columns hold only the sha256)
    columns: dict  # image columns to write
    error: tuple[str, str] | None = None  # (kind, message) for a failure
    pixels: np.ndarray | None = None  # the embedder's input (uint8 HWC), when the parent embeds
    vector: np.ndarray | None = None  # the embedding, once computed
    tag_pixels: np.ndarray | None = None  # the tagger's input (uint8 HWC), until it has run
    detections: list | None = None  # what the tagger found, once it has run ([]: nothing)


@dataclass(frozen=True)
class ModelJobs:
    """What a worker needs to make its own CPU models: the embedder (ONNX Runtime, from the
    cached graph) and the tagger, each None where the parent process runs it."""

    embed: str | None
    embed_weights: str | None
    tag: str | None
    tag_weights: str | None
    tag_backend: str
    min_score: float
    batch_size: int | None
    threads: int
    torch_threads: int  # 1 where the parent had loaded torch: its OpenMP pool hangs in a forked child
    embed_backend: str = "onnx"
    device: str = "cpu"  # where torch models run (a Ray actor may hold a GPU)


_worker_models: dict = {}


def extract(task: Task) -> Result:
    """One file's features, or its failure: nothing one file holds can raise out of here."""
    try:
        with open(task.path, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte from a file list
        return _failed(task, None, "unreadable", f"cannot read file: {getattr(exc, 'strerror', None) or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if sha in task.reusable:
        return Result(task.relpath, len(data), task.mtime_ns, "same", {"sha256": sha})
    try:
        return _features(task, data, sha)
    except ImageError as exc:
        return _failed(task, sha, exc.kind, str(exc), exc.size)
    except MemoryError:
        return _failed(task, sha, "too_large", "ran out of memory on this image")
    except Exception as exc:  # noqa: BLE001 - the boundary of one file: record it, go on with the rest
        return _failed(task, sha, "error", f"{type(exc).__name__}: {exc}")


def _features(task: Task, data: bytes, sha: str) -> Result:
    decoded = decode(data, full=task.full_decode, max_pixels=task.max_pixels)
    grey = work_image(decoded.image)
    picture = picture_size(decoded.width, decoded.height, grey)
    columns = {
        "sha256": sha,
        "pixel_digest": decoded.pixel_digest,
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
        "mode": decoded.mode,
        "picture_width": picture[0],
        "picture_height": picture[1],
        **work_hashes(grey),
    }
    pixels = model_input(decoded.image, task.embed_size) if task.embed_size else None
    tag_pixels = tag_input(decoded.image, *task.tag_input) if task.tag_input else None
    return Result(task.relpath, len(data), task.mtime_ns, OK, columns, pixels=pixels, tag_pixels=tag_pixels)


def extract_many(tasks: list[Task], jobs: ModelJobs | None = None) -> list[Result]:
    results = [extract(task) for task in tasks]
    if jobs is None:
        return results
    embedder, tagger = _worker_models.get(jobs) or make_models(jobs)
    return infer(results, embedder, tagger, jobs.min_score)


def infer(results: list[Result], embedder, tagger, min_score: float) -> list[Result]:
    """Run the models on the results that still carry their input: vectors and detections
    filled in, pixels dropped. A tagger that ``shares`` the embedder reads its logits."""
    embed = [n for n, r in enumerate(results) if r.pixels is not None] if embedder is not None else []
    tag = [n for n, r in enumerate(results) if r.tag_pixels is not None] if tagger is not None else []
    done: dict[int, dict] = {n: {"pixels": None} for n in embed}
    if embed:
        vectors, logits = embedder.run(np.stack([results[n].pixels for n in embed]))
        for n, vector in zip(embed, vectors):
            done[n]["vector"] = vector
        if tagger is not None and tagger.shares(embedder):
            for n, found in zip(embed, tagger.from_logits(logits, min_score)):
                done[n]["detections"] = found
    if tag:
        for n, found in zip(tag, tagger.detect_arrays([results[n].tag_pixels for n in tag], min_score=min_score)):
            done.setdefault(n, {}).update(tag_pixels=None, detections=found)
    return [replace(r, **done[n]) if n in done else r for n, r in enumerate(results)]


def make_models(jobs: ModelJobs):
    """Once per worker process (or Ray actor): its own embedder and tagger."""
    from simsearch.models import create_embedder  # noqa: PLC0415 - only in workers that run models
    from simsearch.taggers import create_tagger, tagger_needs_torch  # noqa: PLC0415

    embedder = tagger = None
    if jobs.embed:
        embedder = create_embedder(jobs.embed, weights=jobs.embed_weights, backend=jobs.embed_backend,
                                   device=jobs.device, batch_size=jobs.batch_size, threads=jobs.threads)
    if jobs.tag:
        if tagger_needs_torch(jobs.tag, jobs.tag_backend):
            import torch  # noqa: PLC0415

            torch.set_num_threads(jobs.torch_threads)  # before any torch op
        tagger = create_tagger(jobs.tag, weights=jobs.tag_weights, backend=jobs.tag_backend, device=jobs.device,
                               threads=jobs.threads, embedder=embedder)
    _worker_models[jobs] = embedder, tagger
    return embedder, tagger


def crashed(task: Task) -> Result:
    """The failure of a file whose decoding killed the worker process (a codec crash, out of memory)."""
    return _failed(task, None, "crashed", "the worker process decoding this file died (a decoder crash or "
                   "the system running out of memory); the rest of the run went on")


def _failed(task: Task, sha: str | None, kind: str, message: str, size: tuple[int, int] | None = None) -> Result:
    columns = {"sha256": sha} if size is None else {"sha256": sha, "width": size[0], "height": size[1]}
    return Result(task.relpath, task.size, task.mtime_ns, FAILED, columns, (kind, message))

