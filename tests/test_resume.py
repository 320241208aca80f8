"""A real indexing process killed with SIGKILL at several points resumes to the
exact index an uninterrupted run builds."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
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


def _index_cmd(folder, index, embed):
    return [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(index),
            "--workers", "2", "--batch-size", "16", "--no-progress"] + (["--embed"] if embed else [])


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
        " phash, dhash, whash, ahash, phash_dihedral FROM images ORDER BY relpath").fetchall()
    failures = con.execute("SELECT relpath, kind, message FROM failures ORDER BY relpath").fetchall()
    vectors = con.execute("SELECT relpath, model, vector FROM embeddings JOIN images ON images.id = image_id"
                          " ORDER BY relpath").fetchall()
    con.close()
    return images, failures, vectors


def _same_vectors(got, want) -> bool:
    """Same images and models; vectors equal up to float rounding (batches may be cut differently)."""
    if [g[:2] for g in got] != [w[:2] for w in want]:
        return False
    a = np.frombuffer(b"".join(g[2] for g in got), "<f4")
    b = np.frombuffer(b"".join(w[2] for w in want), "<f4")
    return a.shape == b.shape and np.abs(a - b).max(initial=0.0) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("embed", [False, True], ids=["hashes", "embeddings"])
def test_killed_runs_resume_to_the_uninterrupted_index(many, tmp_path, embed):
    reference = tmp_path / "reference"
    subprocess.run(_index_cmd(many, reference, embed), check=True, capture_output=True)
    want = _dump(reference)
    assert len(want[0]) == N_IMAGES + 1 and len(want[1]) == 1 and len(want[2]) == (N_IMAGES if embed else 0)

    index = tmp_path / "killed"
    seen = []
    for threshold in (0, 50, 120, 190):  # rows written before the kill
        proc = subprocess.Popen(_index_cmd(many, index, embed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while proc.poll() is None and _rows(index) <= threshold:
            time.sleep(0.02)
        assert proc.poll() is None, f"indexing finished before the kill at {threshold} rows"
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, as kill -9 of a process group
        proc.wait()
        seen.append(_rows(index))
        simsearch.open_index(index).stats()  # the index opens after every kill
    assert all(0 < n < N_IMAGES + 1 for n in seen[1:]), seen
    subprocess.run(_index_cmd(many, index, embed), check=True, capture_output=True)
    got = _dump(index)
    assert got[:2] == want[:2] and _same_vectors(got[2], want[2])
    # derived FAISS data is rebuilt after the resume and agrees with the reference
    q = many / "img_0005.jpg"
    def hits(where):
        matches = simsearch.open_index(where).search(q, k=5)
        return [(m.image.path, m.distance, round(m.similarity or 0.0, 4)) for m in matches]

    assert hits(index) == hits(reference)
    shutil.rmtree(index)
