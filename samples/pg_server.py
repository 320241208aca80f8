"""A real PostgreSQL server on 127.0.0.1 for tests and benchmarks, started and stopped by them (the Debian
package's binaries; as the postgres user when run as root, which the server refuses)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@contextmanager
def postgres_server(bin_dir: Path, *, folder: str | None = None):
    """Yields a function that makes a fresh, empty database and returns its SQLAlchemy URL; the server and
    its data are gone afterwards. ``folder``: where the data goes (default: a new temporary folder)."""
    import psycopg

    # not under pytest's folder, which only its owner may enter: the server may run as another user
    base = Path(tempfile.mkdtemp(prefix="simsearch-postgres-", dir=folder))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"),
                    "-w", "start"], check=True, capture_output=True)
    made = []

    def database() -> str:
        name = f"simsearch_{len(made)}"
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"  # psycopg 3, as simsearch reads it

    try:
        yield database
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
