"""The database side of an index: engine, migrations, settings and the data version."""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from .errors import DiskFull, IndexNotFound, IndexTooNew, InvalidArgument
from .names import SKIP_MARKER
from .schema import Base, Meta

DB_FILE = "simsearch.db"
HEAD_REVISION = "0007"  # the newest file in migrations/versions (a test keeps them equal)


def migrations_dir() -> Path:
    """``migrations/`` at the repository root, installed as ``simsearch._migrations``."""
    try:
        from . import _migrations  # installed from a wheel

        return Path(_migrations.__file__).parent
    except ImportError:
        return Path(__file__).resolve().parent.parent / "migrations"


def sqlite_url(directory: Path, read_only: bool = False) -> str:
    if not read_only:
        return f"sqlite:///{directory / DB_FILE}"
    wal = directory / f"{DB_FILE}-wal"
    # a cleanly closed index has no write-ahead log: opened immutable, SQLite writes nothing at all
    # (plain read-only mode would still make -wal and -shm files); with a log to read, read-only mode
    mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
    return f"sqlite:///file:{directory / DB_FILE}?{mode}&uri=true"


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for ``url``; a malformed URL or a missing database driver is an ``InvalidArgument``.
    A plain ``postgresql://`` URL uses psycopg 3 (the ``postgres`` extra)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return _engine(url, read_only)
    except ArgumentError:
        raise InvalidArgument(f"not a database URL: {url!r} (expected e.g. sqlite:///path/simsearch.db or "
                              "postgresql://user@host/db)") from None
    except NoSuchModuleError as exc:
        raise InvalidArgument(f"unknown database in {url!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise InvalidArgument(f"the database driver {exc.name!r} is not installed (for PostgreSQL: "
                              "pip install 'psycopg[binary]')") from None


def _engine(url: str, read_only: bool) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            if not read_only:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if read_only:
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("SET TRANSACTION READ ONLY"))
    return engine


@contextmanager
def disk_full_is_one_error(directory: Path):
    """A full disk, whichever layer notices it (SQLite, the file system), becomes ``DiskFull``."""
    try:
        yield
    except (OSError, DBAPIError) as exc:
        reason = exc.errno == errno.ENOSPC if isinstance(exc, OSError) else "disk is full" in str(exc.orig)
        if not reason:
            raise
        raise DiskFull(f"the disk is full writing the index at {directory}; free some space and run the same "
                       "command again: everything committed so far is kept") from None


def upgrade(engine: Engine, read_only: bool = False, lock=nullcontext) -> None:
    """Bring the schema to head; refuse a database written by a newer simsearch, and a read-only
    one that needs migrating. ``lock()``: held while migrating, so that two processes opening one
    new or old index migrate it once.

    An index already at head is recognised with one query; Alembic (slow to
    import) is loaded only when there is something to migrate or to explain.
    """
    if _revisions(engine, busy_is_unknown=True) == {HEAD_REVISION}:
        return
    if read_only:
        raise IndexNotFound("the index is read-only and its schema needs an upgrade: open it once with write "
                            "access (any simsearch command that writes, e.g. simsearch index)")
    with lock():
        current = _revisions(engine)  # another process may have migrated it while this one waited
        if not current:
            _create(engine)
        elif current != {HEAD_REVISION}:
            _migrate(engine, current)


def _create(engine: Engine) -> None:
    """A new index: the schema at head made in one step from the models, stamped with the head
    revision (the same schema the migrations build, as a test checks; without loading Alembic,
    which costs 0.4 s)."""
    version = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
        version.create(conn)
        conn.execute(version.insert().values(version_num=HEAD_REVISION))


def is_index(engine: Engine) -> bool:
    """Whether the database holds a simsearch index (at any schema revision)."""
    return bool(_revisions(engine))


# how long opening keeps trying a database SQLite calls locked without waiting on its busy handler: it answers
# "locked" at once where waiting could deadlock, as when one process opens a WAL database while another's last
# connection closes it (one of two `simsearch index` runs starting on one new index, about 1 time in 25 here)
OPEN_RETRY_S = 10.0


def _revisions(engine: Engine, busy_is_unknown: bool = False) -> set[str] | None:
    """The database's schema revisions; None, with ``busy_is_unknown``, while another process
    holds it locked (creating it, most likely: the caller then waits for the writer lock)."""
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            with engine.connect() as conn:
                return _current_revisions(conn)
        except SQLAlchemyError as exc:
            locked = "database is locked" in str(exc)
            if locked and busy_is_unknown:
                return None
            if not locked or time.monotonic() > deadline:
                raise IndexNotFound(f"cannot open the index database: {exc.orig or exc}") from None
            time.sleep(0.1)


def _migrate(engine: Engine, current: set[str]) -> None:
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    script = ScriptDirectory(str(migrations_dir()))
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = sorted(rev for rev in current if rev not in known)
    if unknown:
        raise IndexTooNew(
            f"this index is at schema revision {unknown[0]}, newer than this simsearch knows "
            f"(head {script.get_current_head()}); upgrade simsearch (pip install -U simsearch) to open it"
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _current_revisions(conn) -> set[str]:
    """Alembic's recorded revisions; empty for a new database."""
    from sqlalchemy import inspect  # noqa: PLC0415

    if not inspect(conn).has_table("alembic_version"):
        return set()
    return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}


def get_meta(conn, key: str, default: str | None = None) -> str | None:
    value = conn.execute(select(Meta.value).where(Meta.key == key)).scalar()
    return default if value is None else value


def get_metas(conn, defaults: dict[str, str]) -> dict[str, str]:
    """Several settings in one query: each key of ``defaults`` -> its value, or its default where unset."""
    found = dict(conn.execute(select(Meta.key, Meta.value).where(Meta.key.in_(list(defaults)))).all())
    return {key: found.get(key, default) for key, default in defaults.items()}


def set_meta(conn, key: str, value: str) -> None:
    updated = conn.execute(Meta.__table__.update().where(Meta.key == key).values(value=value)).rowcount
    if not updated:
        conn.execute(Meta.__table__.insert().values(key=key, value=value))


def file_stem(name: str) -> str:
    """A model name made safe as part of a file name (``timm:resnet50`` -> ``timm_resnet50``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def check_spec(stored: dict, spec: dict, name: str, what: str) -> None:
    """Refuse a model whose spec differs from the one the index's ``what`` were made with."""
    if stored != spec:
        raise InvalidArgument.hinted(
            f"this index holds {name} {what} made with other weights or settings "
            f"(weights sha256 {stored.get('weights_sha256', '?')[:12]}); pass {{}} "
            "to those weights, or build a new index", "weights=PATH", "--weights PATH")


def mark_not_indexed(folder: str | os.PathLike, what: str) -> None:
    """Leave SKIP_MARKER in ``folder``, one of simsearch's own (``what`` it holds), so that indexing a folder
    above it never takes its files in: duplicates moved aside would come back as duplicates again, and
    thumbnails would pair with their photos. A folder that cannot be written is left as it is."""
    marker = os.path.join(folder, SKIP_MARKER)
    if not os.path.exists(marker):
        with suppress(OSError), open(marker, "w") as fh:
            fh.write(f"simsearch does not index this folder ({what}). Delete this file to index it.\n")
