"""The database side of an index: engine, migrations, settings and the data version."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from .errors import IndexNotFound, IndexTooNew, InvalidArgument
from .schema import Meta

DB_FILE = "simsearch.db"
HEAD_REVISION = "0005"  # the newest file in migrations/versions (a test keeps them equal)


def migrations_dir() -> Path:
    """``migrations/`` at the repository root, installed as ``simsearch._migrations``."""
    try:
        from . import _migrations  # installed from a wheel

        return Path(_migrations.__file__).parent
    except ImportError:
        return Path(__file__).resolve().parent.parent / "migrations"


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / DB_FILE}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a malformed URL or a missing database driver is an ``InvalidArgument``."""
    try:
        return _engine(url)
    except ArgumentError:
        raise InvalidArgument(f"not a database URL: {url!r} (expected e.g. sqlite:///path/simsearch.db or "
                              "postgresql://user@host/db)") from None
    except NoSuchModuleError as exc:
        raise InvalidArgument(f"unknown database in {url!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise InvalidArgument(f"the database driver {exc.name!r} is not installed (for PostgreSQL: "
                              "pip install 'psycopg[binary]')") from None


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Bring the schema to head; refuse a database written by a newer simsearch.

    An index already at head is recognised with one query; Alembic (slow to
    import) is loaded only when there is something to migrate or to explain.
    """
    try:
        with engine.connect() as conn:
            current = _current_revisions(conn)
    except SQLAlchemyError as exc:
        raise IndexNotFound(f"cannot open the index database: {exc.orig or exc}") from None
    if current == {HEAD_REVISION}:
        return
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
        raise InvalidArgument(
            f"this index holds {name} {what} made with other weights or settings "
            f"(weights sha256 {stored.get('weights_sha256', '?')[:12]}); pass --weights PATH "
            "to those weights, or build a new index"
        )
