"""A real indexing process killed with SIGKILL at several points resumes to the
exact index an uninterrupted run builds."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from PIL import Image

import simsearch

from .conftest import REPO

N_IMAGES = 240


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    sources = [Image.open(p).convert("RGB") for p in sorted((REPO / "samples" / "images").iterdir())]
    for n in range(N_IMAGES):
        img = sources[n % len(sources)]
        w, h = img.size
        img.resize((w - n % 37, h - n % 23)).save(folder / f"img_{n:04d}.jpg", quality=60 + n % 30)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    return folder


def _index_cmd(folder, index):
    return [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(index),
            "--workers", "2", "--batch-size", "16", "--no-progress"]


def _rows(index_dir) -> int:
    try:
        con = sqlite3.connect(f"file:{index_dir / 'simsearch.db'}?mode=ro", uri=True, timeout=5)
        return con.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def _dump(index_dir):
    con = sqlite3.connect(index_dir / "simsearch.db")
    images = con.execute(
        "SELECT relpath, size, mtime_ns, sha256, pixel_digest, width, height, format, mode, status,"
        " phash, dhash, whash, ahash FROM images ORDER BY relpath").fetchall()
    failures = con.execute("SELECT relpath, kind, message FROM failures ORDER BY relpath").fetchall()
    con.close()
    return images, failures


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_index(many, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_index_cmd(many, reference), check=True, capture_output=True)
    want = _dump(reference)
    assert len(want[0]) == N_IMAGES + 1 and len(want[1]) == 1

    index = tmp_path / "killed"
    seen = []
    for threshold in (0, 50, 120, 190):  # rows written before the kill
        proc = subprocess.Popen(_index_cmd(many, index), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while proc.poll() is None and _rows(index) <= threshold:
            time.sleep(0.02)
        assert proc.poll() is None, f"indexing finished before the kill at {threshold} rows"
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, as kill -9 of a process group
        proc.wait()
        seen.append(_rows(index))
        simsearch.open_index(index).stats()  # the index opens after every kill
    assert all(0 < n < N_IMAGES + 1 for n in seen[1:]), seen
    subprocess.run(_index_cmd(many, index), check=True, capture_output=True)
    assert _dump(index) == want
    # derived FAISS data is rebuilt after the resume and agrees with the reference
    q = many / "img_0005.jpg"
    ref = [(m.image.path, m.distance) for m in simsearch.open_index(reference).search(q, k=5)]
    assert [(m.image.path, m.distance) for m in simsearch.open_index(index).search(q, k=5)] == ref
    shutil.rmtree(index)
