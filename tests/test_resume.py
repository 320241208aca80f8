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

import simsearch

from .conftest import N_FILES


def _index_cmd(folder, index, features):
    return [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(index),
            "--workers", "2", "--batch-size", "16", "--no-progress", *features]


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
    tagged = con.execute("SELECT relpath, tagger FROM tagged JOIN images ON images.id = image_id"
                         " ORDER BY relpath").fetchall()
    detections = con.execute("SELECT relpath, tagger, label, score, x1, y1, x2, y2 FROM detections"
                             " JOIN images ON images.id = image_id ORDER BY relpath, tagger, label, score").fetchall()
    con.close()
    return images, failures, vectors, tagged, detections


def _by_id(index_dir) -> list[str]:
    """The paths in image id order."""
    con = sqlite3.connect(index_dir / "simsearch.db")
    try:
        return [path for (path,) in con.execute("SELECT relpath FROM images ORDER BY id")]
    finally:
        con.close()


def _same_detections(got, want) -> bool:
    """Same images and labels; scores and boxes equal up to float rounding."""
    return [g[:3] for g in got] == [w[:3] for w in want] and all(
        abs(a - b) <= 1e-3 for g, w in zip(got, want) for a, b in zip(g[3:], w[3:]))


def _same_vectors(got, want) -> bool:
    """Same images and models; vectors equal up to float rounding (batches may be cut differently)."""
    if [g[:2] for g in got] != [w[:2] for w in want]:
        return False
    a = np.frombuffer(b"".join(g[2] for g in got), "<f4")
    b = np.frombuffer(b"".join(w[2] for w in want), "<f4")
    return a.shape == b.shape and np.abs(a - b).max(initial=0.0) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("features", [[], ["--embed"], ["--tag", "yolov3-tiny"]],
                         ids=["hashes", "embeddings", "tags"])
def test_killed_runs_resume_to_the_uninterrupted_index(many, tmp_path, features, request):
    if features:
        pytest.importorskip("onnxruntime", reason="the embed extra is not installed")
    if "--tag" in features:
        request.getfixturevalue("yolo_folder")  # the tagger's files, in the session's model cache
    reference = tmp_path / "reference"
    subprocess.run(_index_cmd(many, reference, features), check=True, capture_output=True)
    want = _dump(reference)
    assert len(want[0]) == N_FILES and len(want[1]) == 1
    assert len(want[2]) == (N_FILES - 1 if "--embed" in features else 0)
    assert len(want[3]) == (N_FILES - 1 if "--tag" in features else 0)

    index = tmp_path / "killed"
    seen = []
    for threshold in (0, 50, 120, 190):  # rows written before the kill
        proc = subprocess.Popen(_index_cmd(many, index, features), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while proc.poll() is None and _rows(index) <= threshold:
            time.sleep(0.02)
        assert proc.poll() is None, f"indexing finished before the kill at {threshold} rows"
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, as kill -9 of a process group
        proc.wait()
        seen.append(_rows(index))
        simsearch.open_index(index).stats()  # the index opens after every kill
    assert all(0 < n < N_FILES for n in seen[1:]), seen
    subprocess.run(_index_cmd(many, index, features), check=True, capture_output=True)
    got = _dump(index)
    assert got[:2] == want[:2] and _same_vectors(got[2], want[2])
    assert _by_id(index) == _by_id(reference)  # the same ids: each file in the wave it had
    assert got[3] == want[3] and _same_detections(got[4], want[4])
    # derived FAISS data is rebuilt after the resume and agrees with the reference
    q = many / "img_0005.jpg"
    def hits(where):
        matches = simsearch.open_index(where).search(q, k=5)
        return [(m.image.path, m.distance, round(m.similarity or 0.0, 4)) for m in matches]

    assert hits(index) == hits(reference)
    shutil.rmtree(index)
