"""Worker processes for the per-file stage, and a run that survives one of them dying.

A file can kill the process decoding it (a codec segfault, the kernel's OOM killer).
Then every chunk in flight is lost with it; they are run again one at a time, and a
chunk that kills its worker again is run file by file, so the file that does it is
recorded as a failure and costs nothing but itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from .features import ModelJobs, Result, Task, crashed, extract, extract_many

IN_PROCESS_BELOW = 32  # fewer files than this run without starting worker processes
CHUNK = 16  # files per task sent to a worker


class Workers:
    """A process pool that is started again when a worker dies."""

    def __init__(self, count: int, start_method: str = "fork"):
        self.count = count
        self.start_method = start_method
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(_start_method(self.start_method))
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload([extract_many.__module__])  # imported once, in the server
        executor = ProcessPoolExecutor(self.count, mp_context=context)
        executor.submit(int).result()  # start every worker now, before the parent loads any model
        return executor

    def submit(self, tasks: list[Task], jobs: ModelJobs | None):
        return self._executor.submit(extract_many, tasks, jobs)

    def restart(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._start()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# libraries that run thread pools of their own once loaded (their threads' locks are what a fork must not copy)
THREADED = ("onnxruntime", "torch", "faiss", "cv2", "ray")


def _start_method(asked: str) -> str:
    """``asked``, except where a fork is not safe. A command forks its workers before it loads any model or index,
    and fork needs no ``__main__`` guard. A process that has loaded one of ``THREADED`` (a program that loaded a
    model, a test session, a command restarting a worker after a crash) gets a fork server instead: a fork copies
    the locks those threads hold at that moment, and a worker can wait on one forever (seen: both workers of a test
    session, each at its first task, waited 20 minutes). Like spawn, a fork server runs an unguarded main script
    again in each worker. Outside POSIX, spawn."""
    if os.name != "posix":
        return "spawn"
    return "forkserver" if asked == "fork" and any(name in sys.modules for name in THREADED) else asked


@contextmanager
def worker_pool(count: int, files: int, *, isolate: bool = False, start_method: str = "fork"):
    """``Workers``, or None where the work is too small to share out (unless ``isolate``: every file in a
    worker process, so that none can take this process down)."""
    if not isolate and (count == 1 or files < IN_PROCESS_BELOW):
        yield None
        return
    pool = Workers(count, start_method)
    try:
        yield pool
    finally:
        pool.close()


def extract_all(tasks: list[Task], pool: Workers | None, jobs: ModelJobs | None, ahead: int) -> Iterator[Result]:
    """Results in task order. At most ``ahead`` files are decoded ahead of the consumer, so
    memory stays bounded while the workers keep busy during inference and writes."""
    if pool is None:
        yield from map(extract, tasks)
        return
    pending: deque = deque()  # (chunk, future), in task order
    for start in range(0, len(tasks), CHUNK):
        chunk = tasks[start : start + CHUNK]
        pending.append((chunk, pool.submit(chunk, jobs)))
        if len(pending) * CHUNK >= ahead:
            yield from _next_results(pool, pending, jobs)
    while pending:
        yield from _next_results(pool, pending, jobs)


def _next_results(pool: Workers, pending: deque, jobs) -> list[Result]:
    chunk, future = pending.popleft()
    try:
        return future.result()
    except BrokenProcessPool:
        lost = [chunk] + [c for c, _ in pending]  # a dead worker breaks every future in flight
        pending.clear()
        pool.restart()
        return [result for c in lost for result in _one_at_a_time(pool, c, jobs)]


def _one_at_a_time(pool: Workers, chunk: list[Task], jobs) -> list[Result]:
    """A lost chunk run alone; if it kills its worker again, file by file."""
    try:
        return pool.submit(chunk, jobs).result()
    except BrokenProcessPool:
        pool.restart()
    results = []
    for task in chunk:
        try:
            results.extend(pool.submit([task], jobs).result())
        except BrokenProcessPool:
            pool.restart()
            results.append(crashed(task))
    return results
