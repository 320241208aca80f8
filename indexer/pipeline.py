"""The bulk indexing run: scan -> extract (worker processes) -> batched writes.

Every batch commits in one transaction, so a run killed at any instant leaves
an index that opens; running the same command again skips what was written
(same size and mtime) and finishes the rest, giving the index an
uninterrupted run builds.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tqdm import tqdm

from simsearch import store
from simsearch.errors import InvalidArgument
from simsearch.imageio import DEFAULT_MAX_PIXELS
from simsearch.schema import FAILED, OK, REMOVED

from .features import Result, Task, extract
from .scan import Scan, scan_roots

_IN_PROCESS_BELOW = 32  # fewer tasks than this run without starting worker processes


@dataclass
class RunSummary:
    """What a run did. ``seconds`` holds time per stage."""

    scanned: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    indexed: int = 0
    failed: int = 0
    removed: int = 0
    restored: int = 0
    skipped: int = 0  # files whose extension is not an image's
    seconds: dict = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"indexed {self.indexed}, failed {self.failed}, unchanged {self.unchanged}, removed {self.removed}"
            f" (scanned {self.scanned}: {self.new} new, {self.changed} changed; "
            f"{self.skipped} non-image files passed over) in {sum(self.seconds.values()):.1f} s"
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
) -> RunSummary:
    """Index ``paths`` (folders recursively, or files) into ``index``."""
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
    for scan in scans:
        _run_root(index, scan, summary, full, max_pixels, workers, batch_size, progress)
    return summary


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


def _run_root(index, scan: Scan, summary: RunSummary, full, max_pixels, workers, batch_size, progress) -> None:
    t0 = time.perf_counter()
    with index.atomic() as conn:
        root_id = index.root_id(conn, scan.root)
        known = index.known_files(conn, root_id)
        index.record_errors(conn, root_id, scan.errors)
        tasks, restore = _plan(scan, known, full, max_pixels, summary)
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
    for result in _extract_all(tasks, workers):
        batch.append(result)
        if len(batch) >= batch_size:
            _write(index, root_id, batch, known, summary)
            bar.update(len(batch))
            batch = []
    _write(index, root_id, batch, known, summary)
    bar.update(len(batch))
    bar.close()
    summary.seconds["extract+write"] = summary.seconds.get("extract+write", 0.0) + time.perf_counter() - t0


def _plan(scan: Scan, known: dict, full: bool, max_pixels: int, summary: RunSummary):
    tasks, restore = [], []
    for entry in scan.entries:
        summary.scanned += 1
        row = known.get(os.fsencode(entry.relpath))  # (id, size, mtime_ns, sha256, status)
        if row is not None and row[1] == entry.size and row[2] == entry.mtime_ns:
            summary.unchanged += 1
            if row[4] == REMOVED:
                restore.append(row[0])
                summary.restored += 1
            continue
        if row is None:
            summary.new += 1
        else:
            summary.changed += 1
        path = os.path.join(scan.root, entry.relpath)
        known_sha = row[3] if row is not None and row[4] == OK else None
        tasks.append(Task(path, entry.relpath, entry.size, entry.mtime_ns, known_sha, full, max_pixels))
    return tasks, restore


def _extract_all(tasks: list[Task], workers: int | None) -> Iterator[Result]:
    """Results in task order, from a pool of worker processes for large runs."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) < _IN_PROCESS_BELOW:
        yield from map(extract, tasks)
        return
    # fork: callers need no __main__ guard; the parent runs no threads (no FAISS, no torch) here
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    with ctx.Pool(workers) as pool:
        yield from pool.imap(extract, tasks, chunksize=chunk)


def _write(index, root_id: int, batch: list[Result], known: dict, summary: RunSummary) -> None:
    if not batch:
        return
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
        index.write_files(conn, root_id, rows, known)
