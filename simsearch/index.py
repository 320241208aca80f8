"""The ``Index``: one object owning the database, the derived FAISS indexes and the queries."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, bindparam, func, select

from . import store
from .errors import IndexNotFound, InvalidArgument
from .hamming import HASH_BITS, connected_groups, hamming_edges
from .hashing import check_method, hash_image, to_uint64
from .imageio import decode, decode_file
from .schema import FAILED, HASH_METHODS, OK, REMOVED, Failure, Image, Root

DEFAULT_INDEX_DIR = ".simsearch"
# defaults chosen on the development duplicate set (see README, "Choosing thresholds")
DEFAULT_MAX_DISTANCE = {"phash": 2, "dhash": 1, "whash": 0, "ahash": 0}
DUPLICATE_METHODS = ("exact",) + HASH_METHODS
_IN_CHUNK = 900  # ids per IN (...) clause


@dataclass(frozen=True)
class ImageRecord:
    """An indexed image as queries return it."""

    id: int
    path: str  # relative to its root (absolute where the index has several roots)
    abspath: str  # where the file is on disk
    size: int
    width: int
    height: int
    format: str
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Match:
    image: ImageRecord
    distance: int


def default_index_dir() -> Path:
    return Path(os.environ.get("SIMSEARCH_INDEX") or DEFAULT_INDEX_DIR)


def open_index(path: str | os.PathLike | None = None, *, db: str | None = None, create: bool = False) -> "Index":
    """Open the index at ``path`` (default: ``$SIMSEARCH_INDEX`` or ``./.simsearch``).

    ``db`` is an SQLAlchemy URL for the metadata (default: SQLite inside the
    directory). ``create=True`` makes a new index where none exists.
    """
    directory = Path(path) if path is not None else default_index_dir()
    url = db or store.sqlite_url(directory)
    if not directory.is_dir() or (db is None and not (directory / store.DB_FILE).exists()):
        if not create:
            raise IndexNotFound(
                f"no index at {directory}; create one with: simsearch index PATH --index {directory}"
            )
        directory.mkdir(parents=True, exist_ok=True)
    engine = store.make_engine(url)
    store.upgrade(engine)
    return Index(directory, engine)


class Index:
    """An image index: metadata in SQL, derived FAISS binary indexes per hash."""

    def __init__(self, directory: Path, engine):
        self.directory = directory
        self.engine = engine
        self._roots: dict[int, tuple[str, str]] | None = None

    # -- life cycle -------------------------------------------------------
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """A transaction: everything written inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    # -- settings ----------------------------------------------------------
    @property
    def full_decode(self) -> bool:
        """Whether JPEGs are decoded at full size (fixed when the index is first written)."""
        with self.engine.connect() as conn:
            return store.get_meta(conn, "decode", "draft") == "full"

    def data_version(self, conn: Connection | None = None) -> int:
        if conn is None:
            with self.engine.connect() as conn:
                return int(store.get_meta(conn, "data_version", "0"))
        return int(store.get_meta(conn, "data_version", "0"))

    def bump_version(self, conn: Connection) -> None:
        store.set_meta(conn, "data_version", str(self.data_version(conn) + 1))

    # -- writing -----------------------------------------------------------
    def add(self, paths: Iterable[str | os.PathLike], **options):
        """Index files and folders (recursively); see ``indexer.run`` for options.

        The bulk pipeline lives in the write-side package ``indexer``; it is
        imported here, on use, so that reading an index never loads it.
        """
        from indexer import run  # noqa: PLC0415 - deliberate lazy import of the write side

        return run(self, [os.fspath(p) for p in paths], **options)

    def root_id(self, conn: Connection, path: str) -> int:
        raw = os.fsencode(path)
        found = conn.execute(select(Root.id).where(Root.path_raw == raw)).scalar()
        if found is not None:
            return found
        self._roots = None
        display = raw.decode("utf-8", "backslashreplace")
        return conn.execute(Root.__table__.insert().values(path=display, path_raw=raw)).inserted_primary_key[0]

    def known_files(self, conn: Connection, root_id: int) -> dict[bytes, tuple]:
        """relpath bytes -> (id, size, mtime_ns, sha256, status) for a root's files."""
        cols = (Image.relpath_raw, Image.id, Image.size, Image.mtime_ns, Image.sha256, Image.status)
        rows = conn.execute(select(*cols).where(Image.root_id == root_id)).all()
        return {r[0]: tuple(r[1:]) for r in rows}

    def write_files(self, conn: Connection, root_id: int, rows: list[dict], known: dict[bytes, tuple]) -> None:
        """Insert or update image rows (keys: Image columns plus ``error``: (kind, message) or None)
        and keep the failures table in step: one row per failing path, none for a good one."""
        stamp = time.time()
        inserts, updates, failures, cleared = [], [], [], []
        for row in rows:
            raw = os.fsencode(row.pop("relpath"))
            error = row.pop("error")
            row.update(root_id=root_id, relpath_raw=raw, relpath=raw.decode("utf-8", "backslashreplace"),
                       indexed_at=stamp)
            if raw in known:
                updates.append({"_id": known[raw][0], **row})
            else:
                inserts.append(row)
            cleared.append(raw)
            if error is not None:
                failures.append(_failure_row(root_id, raw, *error, stamp))
        self._delete_failures(conn, root_id, cleared)
        if inserts:
            conn.execute(Image.__table__.insert(), _same_keys(inserts))
        for group in _by_keys(updates):
            table = Image.__table__
            values = {k: bindparam(k) for k in group[0] if k != "_id"}
            conn.execute(table.update().where(table.c.id == bindparam("_id")).values(values), group)
        if failures:
            conn.execute(Failure.__table__.insert(), failures)
        self.bump_version(conn)

    def record_errors(self, conn: Connection, root_id: int, errors: list[tuple[str, str, str]]) -> None:
        """Failures of entries that are not files to decode (unlistable folders, broken links)."""
        stamp = time.time()
        raws = [os.fsencode(rel) for rel, _, _ in errors]
        self._delete_failures(conn, root_id, raws)
        if errors:
            conn.execute(Failure.__table__.insert(), [
                _failure_row(root_id, raw, kind, message, stamp) for raw, (_, kind, message) in zip(raws, errors)
            ])

    def set_status(self, conn: Connection, ids: list[int], status: str) -> None:
        """Mark images removed (gone or moved aside) or ok again (back, unchanged)."""
        for chunk in _chunks(ids):
            conn.execute(Image.__table__.update().where(Image.id.in_(chunk)).values(status=status))
        if ids:
            self.bump_version(conn)

    def restore_paths(self, paths: Iterable[str]) -> int:
        """Mark the records of files moved back into place as indexed again; returns how many."""
        roots = {rid: os.fsencode(root) + b"/" for rid, (root, _) in self._root_paths().items()}
        ids = []
        with self.atomic() as conn:
            for path in paths:
                raw = os.fsencode(os.path.abspath(path))
                for rid, prefix in roots.items():
                    if raw.startswith(prefix):
                        found = conn.execute(select(Image.id).where(
                            Image.root_id == rid, Image.relpath_raw == raw[len(prefix):])).scalar()
                        if found is not None:
                            ids.append(found)
            self.set_status(conn, ids, OK)
        return len(ids)

    def _delete_failures(self, conn: Connection, root_id: int, raws: list[bytes]) -> None:
        for chunk in _chunks(raws):
            conn.execute(Failure.__table__.delete().where(Failure.root_id == root_id, Failure.relpath_raw.in_(chunk)))

    # -- reading -----------------------------------------------------------
    def _root_paths(self) -> dict[int, tuple[str, str]]:
        """root id -> (filesystem path, display prefix: '' for a lone root)."""
        if self._roots is None:
            with self.engine.connect() as conn:
                rows = conn.execute(select(Root.id, Root.path_raw, Root.path)).all()
            single = len(rows) == 1
            self._roots = {rid: (os.fsdecode(raw), "" if single else disp + "/") for rid, raw, disp in rows}
        return self._roots

    def _records(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        ids = list(ids)
        roots = self._root_paths()
        out: dict[int, ImageRecord] = {}
        cols = (Image.id, Image.root_id, Image.relpath, Image.relpath_raw, Image.size, Image.width,
                Image.height, Image.format, Image.mtime_ns, Image.sha256)
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(select(*cols).where(Image.id.in_(chunk))):
                    root, prefix = roots[row.root_id]
                    out[row.id] = ImageRecord(
                        row.id, prefix + row.relpath, os.path.join(root, os.fsdecode(row.relpath_raw)),
                        row.size, row.width, row.height, row.format, row.mtime_ns, row.sha256,
                    )
        return out

    def images(self) -> list[ImageRecord]:
        """Every indexed image (status ok), in index order."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(Image.id).where(Image.status == OK).order_by(Image.id)).scalars().all()
        records = self._records(ids)
        return [records[i] for i in ids]

    def hash_codes(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        column = getattr(Image, check_method(method))
        with self.engine.connect() as conn:
            rows = conn.execute(select(Image.id, column).where(Image.status == OK).order_by(Image.id)).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, to_uint64([r[1] for r in rows])

    def hash_query(self, image: str | os.PathLike | bytes) -> dict[str, int]:
        """The four hashes of a query image, decoded the way the index decodes."""
        decoded = decode(image, full=self.full_decode) if isinstance(image, bytes) else decode_file(
            os.fspath(image), full=self.full_decode)
        return hash_image(decoded.image)

    def search(self, image, *, by: str = "phash", k: int = 10, max_distance: int | None = None) -> list[Match]:
        """Nearest indexed images to ``image`` (a path or bytes) by Hamming distance."""
        check_method(by)
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, got {k}")
        _check_distance(max_distance)
        query = self.hash_query(image)[by]
        from .faiss_store import binary_index  # noqa: PLC0415 - FAISS loads only when searching

        ids, distances = binary_index(self, by).search(query, k)
        records = self._records(ids.tolist())
        return [
            Match(records[i], int(d))
            for i, d in zip(ids.tolist(), distances.tolist())
            if max_distance is None or d <= max_distance
        ]

    def duplicates(self, *, by: str = "phash", max_distance: int | None = None) -> list[list[ImageRecord]]:
        """Duplicate groups, largest first; in each, the image to keep comes first.

        ``exact`` groups same bytes or same decoded pixels; a hash method adds
        every pair within ``max_distance`` bits (its default if None).
        """
        if by not in DUPLICATE_METHODS:
            raise InvalidArgument(f"unknown duplicate method {by!r}; choose one of {', '.join(DUPLICATE_METHODS)}")
        _check_distance(max_distance)
        return [self._keep_first(g) for g in self.duplicate_ids(by, max_distance)]

    def duplicate_ids(self, by: str, max_distance: int | None = None) -> list[list[int]]:
        """Duplicate groups as lists of image ids."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Image.id, Image.sha256, Image.pixel_digest).where(Image.status == OK).order_by(Image.id)
            ).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        edges = [_equal_edges([r[1] for r in rows]), _equal_edges([r[2] for r in rows])]
        if by != "exact":
            _, codes = self.hash_codes(by)
            distance = DEFAULT_MAX_DISTANCE[by] if max_distance is None else max_distance
            edges.append(hamming_edges(codes, distance))
        i = np.concatenate([e[0] for e in edges])
        j = np.concatenate([e[1] for e in edges])
        return [ids[g].tolist() for g in connected_groups(len(ids), i, j)]

    def _keep_first(self, group: list[int]) -> list[ImageRecord]:
        records = self._records(group)
        # keep the largest image, then the largest file, then the oldest, then by path
        return sorted(records.values(), key=lambda r: (-(r.width * r.height), -r.size, r.mtime_ns, r.path))

    def failures(self) -> list[dict]:
        roots = self._root_paths()
        with self.engine.connect() as conn:
            rows = conn.execute(select(Failure).order_by(Failure.id)).all()
        return [
            {"path": roots[r.root_id][1] + r.relpath, "kind": r.kind, "message": r.message} for r in rows
        ]

    def stats(self) -> dict:
        """Counts of images, failures, removed files and hashes, and sizes on disk."""
        with self.engine.connect() as conn:
            by_status = dict(conn.execute(select(Image.status, func.count()).group_by(Image.status)).all())
            failures = dict(conn.execute(select(Failure.kind, func.count()).group_by(Failure.kind)).all())
            hashed = conn.execute(select(func.count()).where(Image.phash.is_not(None), Image.status == OK)).scalar()
            image_bytes = conn.execute(select(func.coalesce(func.sum(Image.size), 0)).where(Image.status == OK)).scalar()
            roots = conn.execute(select(func.count()).select_from(Root)).scalar()
        return {
            "index": str(self.directory),
            "roots": roots,
            "images": by_status.get(OK, 0),
            "failed": by_status.get(FAILED, 0),
            "removed": by_status.get(REMOVED, 0),
            "failures": sum(failures.values()),
            "failure_kinds": failures,
            "hashes": hashed * len(HASH_METHODS),
            "image_bytes": int(image_bytes),
            "index_bytes": store.dir_size(self.directory),
        }

def _check_distance(max_distance: int | None) -> None:
    if max_distance is not None and not 0 <= max_distance < HASH_BITS:
        raise InvalidArgument(f"max distance must be between 0 and {HASH_BITS - 1}, got {max_distance}")


def _chunks(items: list) -> Iterator[list]:
    """Slices short enough for one IN (...) clause."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _failure_row(root_id: int, raw: bytes, kind: str, message: str, stamp: float) -> dict:
    return {"root_id": root_id, "relpath": raw.decode("utf-8", "backslashreplace"), "relpath_raw": raw,
            "kind": kind, "message": message, "recorded_at": stamp}


def _by_keys(rows: list[dict]) -> list[list[dict]]:
    """Rows grouped by their key sets, so each group is one executemany."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


def _same_keys(rows: list[dict]) -> list[dict]:
    keys = set().union(*rows)
    return [{k: row.get(k) for k in keys} for row in rows]


def _equal_edges(values: list) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking rows with equal, non-null values (a chain through each group)."""
    keyed = sorted((v, i) for i, v in enumerate(values) if v is not None)
    i, j = [], []
    for (va, ia), (vb, ib) in zip(keyed, keyed[1:]):
        if va == vb:
            i.append(ia)
            j.append(ib)
    return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64)
