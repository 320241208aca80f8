"""One writer at a time per index; readers are never blocked.

Every command that changes an index (indexing, tagging, clustering, moving duplicates, undo, and
schema migrations) holds the index's writer lock: an exclusive POSIX record lock (``lockf``) on
``simsearch.db.writer-lock`` beside the database file for an index in SQLite, a session advisory
lock for one in another database (PostgreSQL). A second writer is refused at once with a message
naming the holder, rather than interleaving its batches with the first one's. A POSIX lock belongs
to its process (the indexing workers forked while it is held do not inherit it), and the operating
system or the database drops it the instant its holder dies, so a killed run never leaves an index
locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import zlib
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from .errors import IndexBusy, InvalidArgument
from .store import disk_full_is_one_error

LOCK_SUFFIX = ".writer-lock"  # beside the SQLite database file


class Writer:
    """An index's right to write: its writer lock, held re-entrantly, with a full disk reported as
    ``DiskFull`` and a read-only index refused."""

    def __init__(self, directory: Path, engine: Engine, read_only: bool):
        self.directory, self.engine, self.read_only = directory, engine, read_only
        self._depth = 0

    @contextmanager
    def hold(self):
        if self.read_only:
            raise InvalidArgument(f"the index at {self.directory} is open read-only (it cannot be written "
                                  "here); searching and listing work, changing it does not")
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with writer_lock(self.engine), disk_full_is_one_error(self.directory):
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0


@contextmanager
def writer_lock(engine: Engine, wait: bool = False):
    """Hold the index's writer lock for the block (``wait``: until it is free, else refuse at once)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            yield  # a private in-memory database: no other process can reach it
            return
        path = Path(database.removeprefix("file:").partition("?")[0])
        with _file_lock(path.with_name(path.name + LOCK_SUFFIX), wait):
            yield
    else:
        with _advisory_lock(engine, str(engine.url.render_as_string(hide_password=True)), wait):
            yield


@contextmanager
def _file_lock(path: Path, wait: bool):
    with open(path, "a+") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise IndexBusy(f"{holder} is writing the index database {path.name.removesuffix(LOCK_SUFFIX)} in "
                            f"{path.parent}; run this again when it has "
                            "finished (searching and listing work meanwhile)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"simsearch process {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.lockf(fh, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(engine: Engine, name: str, wait: bool):
    key = zlib.crc32(f"simsearch writer {name}".encode())
    with engine.connect() as conn:
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        elif not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            raise IndexBusy(f"another simsearch process is writing the index in {name}; run this again when "
                            "it has finished (searching and listing work meanwhile)")
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
