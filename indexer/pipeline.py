"""The bulk indexing run: scan -> extract (worker processes) -> embed (this process,
overlapping the workers' decoding) -> batched writes.

Every batch, embeddings included, commits in one transaction, so a run killed
at any instant leaves an index that opens; running the same command again
skips what was written (same size and mtime, every feature present) and
finishes the rest, giving the index an uninterrupted run builds.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from tqdm import tqdm

from simsearch import store
from simsearch.errors import InvalidArgument
from simsearch.imageio import DEFAULT_MAX_PIXELS
from simsearch.schema import FAILED, OK, REMOVED

from .features import EmbedJob, Result, Task, extract, extract_many
from .scan import Scan, scan_roots

_IN_PROCESS_BELOW = 32  # fewer files than this run without starting worker processes
_CHUNK = 16  # files per task sent to a worker


@dataclass
class RunSummary:
    """What a run did. ``seconds`` holds time per stage (``embed`` is part of ``extract+write``)."""

    scanned: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    indexed: int = 0
    failed: int = 0
    removed: int = 0
    restored: int = 0
    refreshed: int = 0  # unchanged files decoded again for a missing feature (an embedding)
    embedded: int = 0
    skipped: int = 0  # files whose extension is not an image's
    elapsed: float = 0.0  # wall seconds of the whole run
    seconds: dict = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"indexed {self.indexed}, failed {self.failed}, unchanged {self.unchanged}, removed {self.removed}, "
            f"embedded {self.embedded} (scanned {self.scanned}: {self.new} new, {self.changed} changed, "
            f"{self.refreshed} completed; "
            f"{self.skipped} non-image files passed over) in {self.elapsed:.1f} s"
        )


def run(
    index,
    paths: list[str],
    *,
    workers: int | None = None,
    batch_size: int = 256,
    full_decode: bool | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    all_files: bool = False,
    progress: bool = False,
    embed: str | None = None,
    weights: str | None = None,
    backend: str = "auto",
    device: str | None = None,
    embed_batch: int | None = None,
) -> RunSummary:
    """Index ``paths`` (folders recursively, or files) into ``index``.

    ``embed`` names an embedder (``simsearch.models``) whose vectors are computed
    in the same pass; ``weights``, ``backend``, ``device`` and ``embed_batch``
    (default: chosen for the backend) go to ``create_embedder``.
    """
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise InvalidArgument(f"no such file or folder: {missing[0]}")
    if workers is not None and workers < 1:
        raise InvalidArgument(f"workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise InvalidArgument(f"batch size must be at least 1, got {batch_size}")
    summary = RunSummary()
    full = _decode_mode(index, full_decode)
    started = time.perf_counter()
    scans = scan_roots(paths, all_files=all_files)
    summary.seconds["scan"] = time.perf_counter() - started
    files = sum(len(scan.entries) for scan in scans)
    # workers fork before the embedder starts its threads
    workers = workers or os.cpu_count() or 1
    with _pool(workers, files) as pool:
        embedder = _embedder(index, embed, weights, backend, device, embed_batch) if embed else None
        job = None
        if pool is not None and embedder is not None and embedder.backend == "onnx":
            # CPU: each worker runs the network on its own files, sharing the cores out
            job = EmbedJob(embedder.spec.name, weights, embedder.batch_size, max(1, (os.cpu_count() or 1) // workers))
        for scan in scans:
            _run_root(index, scan, summary, full, max_pixels, pool, embedder, job, batch_size, progress)
    summary.elapsed = time.perf_counter() - started
    return summary


def _embedder(index, name, weights, backend, device, batch):
    from simsearch.models import create_embedder  # noqa: PLC0415 - torch / onnxruntime only when embedding

    embedder = create_embedder(name, weights=weights, backend=backend, device=device, batch_size=batch)
    with index.atomic() as conn:
        index.use_embedder(conn, embedder)
    return embedder


def _decode_mode(index, full_decode: bool | None) -> bool:
    """The index's decode mode, fixed by its first run; a different one is refused."""
    with index.atomic() as conn:
        stored = store.get_meta(conn, "decode")
        wanted = None if full_decode is None else ("full" if full_decode else "draft")
        if stored is None:
            store.set_meta(conn, "decode", wanted or "draft")
            return wanted == "full"
        if wanted is not None and wanted != stored:
            raise InvalidArgument(
                f"this index decodes JPEGs in {stored} mode; it cannot switch to {wanted} "
                "(build a new index to change it)"
            )
        return stored == "full"


def _run_root(index, scan: Scan, summary: RunSummary, full, max_pixels, pool, embedder, job, batch_size,
              progress) -> None:
    t0 = time.perf_counter()
    model = embedder.spec.name if embedder else None
    with index.atomic() as conn:
        root_id = index.root_id(conn, scan.root)
        known = index.known_files(conn, root_id, model)
        index.record_errors(conn, root_id, scan.errors)
        size = embedder.spec.input_size if embedder else None
        tasks, restore = _plan(scan, known, full, max_pixels, size, summary)
        index.set_status(conn, restore, OK)
        if scan.complete:
            present = {os.fsencode(e.relpath) for e in scan.entries}
            gone = [row[0] for raw, row in known.items() if raw not in present and row[4] != REMOVED]
            index.set_status(conn, gone, REMOVED)
            summary.removed += len(gone)
    summary.failed += len(scan.errors)
    summary.skipped += scan.skipped
    summary.seconds["plan"] = summary.seconds.get("plan", 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks), unit="img", desc="indexing", disable=not progress, file=sys.stderr)
    batch: list[Result] = []
    for result in _extract_all(tasks, pool, job, ahead=2 * batch_size):
        batch.append(result)
        if len(batch) >= batch_size:
            _write(index, root_id, batch, known, embedder, summary)
            bar.update(len(batch))
            batch = []
    _write(index, root_id, batch, known, embedder, summary)
    bar.update(len(batch))
    bar.close()
    summary.seconds["extract+write"] = summary.seconds.get("extract+write", 0.0) + time.perf_counter() - t0


def _plan(scan: Scan, known: dict, full: bool, max_pixels: int, embed_size: int | None, summary: RunSummary):
    tasks, restore = [], []
    for entry in scan.entries:
        summary.scanned += 1
        row = known.get(os.fsencode(entry.relpath))  # (id, size, mtime_ns, sha256, status, complete)
        same_file = row is not None and row[1] == entry.size and row[2] == entry.mtime_ns
        if same_file and row[5]:
            summary.unchanged += 1
            if row[4] == REMOVED:
                restore.append(row[0])
                summary.restored += 1
            continue
        if same_file:
            summary.refreshed += 1
        elif row is None:
            summary.new += 1
        else:
            summary.changed += 1
        path = os.path.join(scan.root, entry.relpath)
        # a changed file with the same bytes is not decoded again, unless a feature is missing
        known_sha = row[3] if row is not None and row[4] == OK and row[5] else None
        tasks.append(Task(path, entry.relpath, entry.size, entry.mtime_ns, known_sha, full, max_pixels, embed_size))
    return tasks, restore


@contextmanager
def _pool(workers: int, files: int):
    """Worker processes, or None where the work is too small to share out."""
    if workers == 1 or files < _IN_PROCESS_BELOW:
        yield None
        return
    # fork: callers need no __main__ guard; the parent has started no threads yet (no FAISS, no model)
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers) as pool:
        yield pool


def _extract_all(tasks: list[Task], pool, job: EmbedJob | None, ahead: int) -> Iterator[Result]:
    """Results in task order. At most ``ahead`` files are decoded ahead of the consumer, so
    memory stays bounded while the workers keep busy during inference and writes."""
    if pool is None or len(tasks) < _IN_PROCESS_BELOW:
        yield from map(extract, tasks)
        return
    chunks = (tasks[i : i + _CHUNK] for i in range(0, len(tasks), _CHUNK))
    pending: deque = deque()
    for chunk in chunks:
        pending.append(pool.apply_async(extract_many, (chunk, job)))
        if len(pending) * _CHUNK >= ahead:
            yield from pending.popleft().get()
    while pending:
        yield from pending.popleft().get()


def _write(index, root_id: int, batch: list[Result], known: dict, embedder, summary: RunSummary) -> None:
    if not batch:
        return
    t0 = time.perf_counter()
    embedded = [n for n, r in enumerate(batch) if r.pixels is not None or r.vector is not None]
    to_encode = [n for n in embedded if batch[n].vector is None]
    vectors = {n: batch[n].vector for n in embedded}
    if to_encode:  # the parent embeds: in-process runs, and GPU backends
        vectors.update(zip(to_encode, embedder.encode_arrays(np.stack([batch[n].pixels for n in to_encode]))))
    summary.seconds["embed"] = summary.seconds.get("embed", 0.0) + time.perf_counter() - t0
    rows = []
    for r in batch:
        if r.status == "same":  # bytes unchanged: refresh size and mtime only
            rows.append({"relpath": r.relpath, "size": r.size, "mtime_ns": r.mtime_ns, "error": None})
            summary.unchanged += 1
            continue
        rows.append({"relpath": r.relpath, "size": r.size, "mtime_ns": r.mtime_ns, "status": r.status,
                     "error": r.error, **r.columns})
        if r.status == FAILED:
            summary.failed += 1
        else:
            summary.indexed += 1
    with index.atomic() as conn:
        ids = index.write_files(conn, root_id, rows, known)
        if embedder is not None:
            failed = [ids[n] for n, r in enumerate(batch) if r.status == FAILED]
            index.drop_embeddings(conn, embedder.spec.name, failed)
            index.write_embeddings(conn, embedder.spec.name, [ids[n] for n in embedded], [vectors[n] for n in embedded])
            summary.embedded += len(embedded)
