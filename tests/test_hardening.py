"""Bad input never takes a run down: any decoder error, and a worker process that dies."""

import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

import simsearch
from simsearch.cli import main
from simsearch.errors import ImageError
from simsearch.imageio import decode

from .conftest import REPO

CHELSEA = REPO / "samples" / "images" / "chelsea.png"


def _corrupt_avif() -> bytes:
    """A real AVIF with its last 100 bytes zeroed: Pillow raises RuntimeError decoding it."""
    buf = io.BytesIO()
    Image.open(CHELSEA).convert("RGB").save(buf, "AVIF")
    data = bytearray(buf.getvalue())
    data[-100:] = bytes(100)
    return bytes(data)


@pytest.fixture(scope="module")
def avif_bytes():
    try:
        return _corrupt_avif()
    except (KeyError, OSError) as exc:
        pytest.skip(f"this Pillow cannot write AVIF: {exc}")


def _many_photos(folder, n: int):
    """``n`` distinct small photos (crops of the samples), enough to start worker processes."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((REPO / "samples" / "images").glob("*"))
    for k in range(n):
        img = Image.open(sources[k % len(sources)]).convert("RGB")
        w, h = img.size
        step = k // len(sources)
        img.crop((step * 3, step * 2, w - step, h - step * 2)).resize((160, 120)).save(folder / f"p{k:03d}.png")


def test_any_decoder_error_is_a_recorded_failure(avif_bytes):
    with pytest.raises(ImageError) as err:
        decode(avif_bytes)
    assert err.value.kind == "corrupt"
    assert "AVIF" in str(err.value)


def test_corrupt_avif_does_not_abort_a_run(tmp_path, avif_bytes):
    photos = tmp_path / "photos"
    _many_photos(photos, 50)
    (photos / "bad.avif").write_bytes(avif_bytes)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        summary = idx.add([photos], workers=2)
        assert (summary.indexed, summary.failed) == (50, 1)
        [failure] = idx.failures()
        assert failure["path"] == "bad.avif" and failure["kind"] == "corrupt"
        assert idx.stats()["images"] == 50
        again = idx.add([photos], workers=2)  # a re-run neither crashes nor redoes the good files
        assert again.unchanged == 51


def test_search_with_corrupt_query_is_one_line(tmp_path, avif_bytes, photos):
    bad = tmp_path / "bad.avif"
    bad.write_bytes(avif_bytes)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([photos], workers=1)
    result = CliRunner().invoke(main, ["search", str(bad), "--index", str(tmp_path / "ix"), "--by", "phash"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot decode AVIF data") and result.output.count("\n") == 1


def test_a_worker_that_dies_costs_only_its_file(tmp_path, monkeypatch):
    """A decoder that kills its process (as a segfault or the OOM killer would) on one file."""
    import simsearch.indexer.features as features

    real_decode = features.decode

    def fatal_decode(data, **kw):
        if b"KILL-THE-WORKER" in data:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_decode(data, **kw)

    monkeypatch.setattr(features, "decode", fatal_decode)  # forked workers inherit it
    photos = tmp_path / "photos"
    _many_photos(photos, 60)
    shutil.copy(photos / "p007.png", photos / "p030-killer.png")
    with open(photos / "p030-killer.png", "ab") as fh:
        fh.write(b"KILL-THE-WORKER")
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        summary = idx.add([photos], workers=2)
        assert (summary.indexed, summary.failed) == (60, 1)
        assert [(f["path"], f["kind"]) for f in idx.failures()] == [("p030-killer.png", "crashed")]
        assert len(idx.images()) == 60


def test_usage_errors_are_one_line_and_help_is_unchanged():
    bad = subprocess.run([sys.executable, "-m", "simsearch.cli", "duplicates", "--bogus"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr == "Error: No such option '--bogus'.\n"
    helped = subprocess.run([sys.executable, "-m", "simsearch.cli", "duplicates", "--help"], capture_output=True,
                            text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: ") and "--level" in helped.stdout


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "Error: no such file or folder: "),
    (["{photos}", "--db", "notaurl"], "Error: not a database URL: 'notaurl'"),
])
def test_bad_index_runs_fail_in_one_line_and_leave_nothing(tmp_path, args, message):
    target = tmp_path / "new-index"
    args = [a.format(missing=tmp_path / "nope", photos=REPO / "samples" / "images") for a in args]
    result = CliRunner().invoke(main, ["index", *args, "--index", str(target)])
    assert result.exit_code == 1 and result.output.startswith(message) and result.output.count("\n") == 1
    assert not target.exists()


def test_a_missing_database_driver_is_named(tmp_path):
    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg is installed here")
    target = tmp_path / "pg-index"
    result = CliRunner().invoke(main, ["index", str(REPO / "samples" / "images"), "--index", str(target),
                                       "--db", "postgresql://simsearch@127.0.0.1:9/none"])
    assert result.exit_code == 1 and "the database driver 'psycopg' is not installed" in result.output
    assert not target.exists()
