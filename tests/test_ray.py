"""The Ray engine on a real two-node Ray cluster on this machine (1 CPU a node, started and stopped here):
the same index as the local engine, a driver killed with SIGKILL resumes to it, and both nodes do work."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import N_FILES
from .test_resume import _by_id, _dump, _rows, _same_vectors

pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("onnxruntime", reason="the embed extra is not installed")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    head.add_node(num_cpus=1)
    head.wait_for_nodes()
    yield head.address
    head.shutdown()


def _cmd(folder, index, *engine, embed=True):
    return [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(index), "--workers", "2",
            "--batch-size", "16", "--no-progress", *(["--embed"] if embed else []), *engine]


def _duplicates(index) -> dict:
    out = subprocess.run([sys.executable, "-m", "simsearch.cli", "duplicates", "--index", str(index), "--format",
                          "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def reference(many, tmp_path_factory):
    index = tmp_path_factory.mktemp("local") / "ix"
    subprocess.run(_cmd(many, index), check=True, capture_output=True)
    return index


@pytest.mark.slow
def test_ray_engine_builds_the_local_index_on_two_nodes(many, reference, cluster, tmp_path):
    index = tmp_path / "ray"
    out = subprocess.run(_cmd(many, index, "--engine", "ray", "--ray-address", cluster), check=True,
                         capture_output=True, text=True).stdout
    decoded, embedded = (dict(re.findall(r"(\w{8}) (\d+)", line)) for line in out.splitlines()[1:3])
    assert sum(map(int, decoded.values())) == N_FILES and sum(map(int, embedded.values())) == N_FILES, out
    assert len(set(decoded) | set(embedded)) == 2, out  # both nodes worked (the model actor holds one CPU)
    got, want = _dump(index), _dump(reference)
    assert got[:2] == want[:2]  # rows, hashes and failures identical
    assert _same_vectors(got[2], want[2])  # embeddings within 1e-5
    assert _duplicates(index) == _duplicates(reference)
    assert _by_id(index) == _by_id(reference)  # the same image ids (the local engine's two waves, Ray's one stream)



@pytest.mark.slow
def test_ray_engine_hashes_alone_on_two_nodes(many, reference, cluster, tmp_path):
    """Without models the same actors (one per CPU) do the per-file stage: the same rows, hashes and failures."""
    index = tmp_path / "hashes"
    out = subprocess.run(_cmd(many, index, "--engine", "ray", "--ray-address", cluster, embed=False), check=True,
                         capture_output=True, text=True).stdout
    decoded = dict(re.findall(r"(\w{8}) (\d+)", out.splitlines()[1]))
    assert sum(map(int, decoded.values())) == N_FILES and len(decoded) == 2, out
    assert f"ray: joined {cluster} in " in out
    got, want = _dump(index), _dump(reference)
    assert got[:2] == want[:2] and got[2] == []
    # nothing new to read: the cluster is not joined at all
    again = subprocess.run(_cmd(many, index, "--engine", "ray", "--ray-address", cluster, embed=False), check=True,
                           capture_output=True, text=True).stdout
    assert "ray" not in again and again.startswith("indexed 0, failed 0,"), again


@pytest.mark.slow
def test_a_run_takes_the_cpus_another_job_leaves_free(many, reference, cluster, tmp_path):
    """With one of the two CPUs held by another job's actor, the run starts one actor, not two (which would wait
    for the held CPU, then give the files to the local fallback)."""
    import ray

    index = tmp_path / "shared"
    ray.init(address=cluster, logging_level="ERROR", log_to_driver=False)
    try:
        busy = ray.remote(num_cpus=1)(_Busy).remote()
        ray.get(busy.ping.remote())
        out = subprocess.run(_cmd(many, index, "--engine", "ray", "--ray-address", cluster, embed=False), check=True,
                             capture_output=True, text=True, timeout=120).stdout
    finally:
        ray.shutdown()
    decoded = dict(re.findall(r"(\w{8}) (\d+)", out.splitlines()[1]))
    assert "finished locally" not in out and list(decoded.values()) == [str(N_FILES)], out
    assert _dump(index)[:2] == _dump(reference)[:2]


class _Busy:
    def ping(self) -> int:
        return 1


@pytest.mark.slow
def test_a_killed_ray_driver_resumes_to_the_same_index(many, reference, cluster, tmp_path):
    index = tmp_path / "killed"
    for _ in range(3):  # on a busy machine the poll below can wake only after the last row is written: again
        shutil.rmtree(index, ignore_errors=True)
        proc = subprocess.Popen(_cmd(many, index, "--engine", "ray", "--ray-address", cluster),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None and _rows(index) == 0:
            time.sleep(0.01)
        assert proc.poll() is None, "indexing finished before the kill"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver (the cluster lives on)
        proc.wait()
        if _rows(index) < N_FILES:
            break
    assert 0 < _rows(index) < N_FILES
    subprocess.run(_cmd(many, index, "--engine", "ray", "--ray-address", cluster), check=True, capture_output=True)
    got, want = _dump(index), _dump(reference)
    assert got[:2] == want[:2] and _same_vectors(got[2], want[2])
    assert _duplicates(index) == _duplicates(reference)


@pytest.mark.slow
def test_an_actor_killed_once_is_restarted_and_the_cluster_finishes(many, reference, cluster, tmp_path):
    """One whole-file actor killed mid-run (as when a node's process is lost): it is restarted, its block is done
    again, and nothing is left to the local fallback."""
    index = tmp_path / "restarted"
    proc = subprocess.Popen(_cmd(many, index, "--engine", "ray", "--ray-address", cluster), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and _rows(index) == 0:
        time.sleep(0.01)
    assert proc.poll() is None, "indexing finished before the kill"
    killed = subprocess.run(["pkill", "-KILL", "-o", "-f", "^ray::Map"], capture_output=True)
    out, err = proc.communicate()
    assert killed.returncode == 0 and proc.returncode == 0, out + err[-3000:]
    assert "finished locally" not in out, out
    got, want = _dump(index), _dump(reference)
    assert got[:2] == want[:2] and _same_vectors(got[2], want[2])


@pytest.mark.slow
def test_what_the_cluster_cannot_finish_is_finished_locally(many, reference, cluster, tmp_path):
    """Every Ray worker killed as soon as it starts (as when a node's workers keep dying): each batch fails
    twice, the dataset gives up, and the driver's own workers finish the run to the same index."""
    index = tmp_path / "fallback"
    proc = subprocess.Popen(_cmd(many, index, "--engine", "ray", "--ray-address", cluster), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        subprocess.run(["pkill", "-KILL", "-f", "^ray::Map"], capture_output=True)  # Ray Data tasks and actors
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0 and "finished locally" in out, out + err[-3000:]
    got, want = _dump(index), _dump(reference)
    assert got[:2] == want[:2] and _same_vectors(got[2], want[2])
