"""k-medoids clustering: real medoids, stored runs, the sampled scheme for large collections."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from simsearch.cli import main
from simsearch.cluster import assign, cluster
from simsearch.errors import InvalidArgument


def _blobs(n_per=40, k=4, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    x = np.repeat(centres, n_per, axis=0) + 0.15 * rng.standard_normal((k * n_per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), n_per)


def _same_partition(a, b) -> bool:
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_exact_and_sampled_schemes_recover_separated_groups():
    x, truth = _blobs(n_per=1500)
    exact = cluster(x[::10], "embedding", 4)
    assert exact.scheme == "exact" and _same_partition(exact.labels, truth[::10])
    sampled = cluster(x, "embedding", 4, exact_below=1000)
    assert sampled.scheme == "clara" and _same_partition(sampled.labels, truth)
    # medoids are real rows at distance 0 from themselves, and every row sits with its nearest medoid
    assert np.allclose(sampled.distances[sampled.medoids], 0.0, atol=1e-5)
    labels, _ = assign(x, x[sampled.medoids], "embedding")
    assert (labels == sampled.labels).all()


def test_auto_picks_k_by_silhouette():
    x, _ = _blobs(n_per=30, k=5, seed=3)
    result = cluster(x, "embedding", auto=True)
    assert result.k == 5 and max(result.scores, key=result.scores.get) == 5


def test_hamming_clustering_of_hashes():
    rng = np.random.default_rng(0)
    bases = rng.integers(0, 2**63, 3, dtype=np.int64).view(np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (60, 2)).astype(np.uint64)
    codes = np.repeat(bases, 20) ^ flips[:, 0] ^ flips[:, 1]
    result = cluster(codes, "phash", 3)
    assert _same_partition(result.labels, np.repeat(np.arange(3), 20))
    assert result.distances.max() <= 4  # a medoid and a member each 2 flips from their base


def test_bad_requests_are_clear():
    x, _ = _blobs(n_per=3, k=2)
    with pytest.raises(InvalidArgument, match="either k or auto"):
        cluster(x, "embedding")
    with pytest.raises(InvalidArgument, match="k must be between"):
        cluster(x, "embedding", 99)
    for seed in (-1, 2**32):  # NumPy's ValueError reached the command line as a traceback
        with pytest.raises(InvalidArgument, match="seed must be between 0 and 4294967295"):
            cluster(x, "embedding", 2, seed=seed)


@pytest.mark.slow
def test_clusters_are_stored_and_listed(photos, tmp_path):
    pytest.importorskip("onnxruntime", reason="the embed extra is not installed")
    runner = CliRunner()
    ix = str(tmp_path / "ix")
    assert runner.invoke(main, ["index", str(photos), "--index", ix, "--workers", "1", "--embed"]).exit_code == 0
    result = runner.invoke(main, ["cluster", "--k", "3", "--name", "three", "--index", ix, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # the run's summary line goes to stderr with --format json
    assert [r["cluster"] for r in rows] == [1, 2, 3] and sum(r["size"] for r in rows) == 29
    assert rows[0]["size"] >= rows[1]["size"] >= rows[2]["size"]
    runs = json.loads(runner.invoke(main, ["clusters", "--index", ix, "--format", "json"]).output)
    assert runs[0]["name"] == "three" and runs[0]["scheme"] == "exact" and runs[0]["images"] == 29
    import simsearch

    idx = simsearch.open_index(ix)
    members = idx.cluster_members("three", 1)
    assert members[0].medoid and members[0].distance == 0.0 and len(members) == rows[0]["size"]
    assert [m.distance for m in members[1:]] == sorted(m.distance for m in members[1:])
    paths = {c: {m.image.path for m in idx.cluster_members("three", c)} for c in range(1, 4)}
    chelsea = next(c for c, found in paths.items() if "chelsea.png" in found)
    assert {"edits/chelsea_q70.jpg", "modes/chelsea_cmyk.jpg", "edits/chelsea_crop.jpg"} <= paths[chelsea]
    again = runner.invoke(main, ["cluster", "--k", "3", "--name", "three", "--index", ix])
    assert again.exit_code == 1 and "exists" in again.output
    by_hash = runner.invoke(main, ["cluster", "--auto", "--by", "phash", "--index", ix])
    assert by_hash.exit_code == 0 and "silhouette" in by_hash.output
    assert "no clustering named" in runner.invoke(main, ["clusters", "nope", "--index", ix]).output


def _no_swap_improves(diss: np.ndarray, medoids: np.ndarray) -> bool:
    """PAM's criterion, by brute force: no medoid/non-medoid swap lowers the total distance."""
    loss = diss[:, medoids].min(axis=1).sum()
    for slot in range(len(medoids)):
        for candidate in np.setdiff1d(np.arange(len(diss)), medoids):
            trial = medoids.copy()
            trial[slot] = candidate
            if diss[:, trial].min(axis=1).sum() < loss - 1e-4:
                return False
    return True


@pytest.mark.parametrize("seed", range(4))
def test_pam_reaches_a_swap_optimum(seed):
    from simsearch.pam import fasterpam

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    diss = np.linalg.norm(x[:, None] - x[None], axis=2)
    for k in (1, 3, 7):
        result = fasterpam(diss, k, seed)
        assert len(set(result.medoids.tolist())) == k and _no_swap_improves(diss, result.medoids)
        assert (result.labels == diss[:, result.medoids].argmin(axis=1)).all()
        assert result.loss == pytest.approx(diss[:, result.medoids].min(axis=1).sum(), rel=1e-5)


def test_silhouette_by_hand():
    from simsearch.pam import silhouette

    # points at 0 and 1 together, a point at 10 alone: a = 1 for both of the pair, b = 10 and 9
    pos = np.array([0.0, 1.0, 10.0])
    diss = np.abs(pos[:, None] - pos[None])
    expected = ((10 - 1) / 10 + (9 - 1) / 9 + 0.0) / 3  # the singleton scores 0
    assert silhouette(diss, np.array([0, 0, 1])) == pytest.approx(expected)


def test_gpl_solver_is_optional_and_agrees(monkeypatch):
    x, _ = _blobs(n_per=60, k=5)
    ours = cluster(x, "embedding", 5)
    try:
        import kmedoids  # noqa: F401
    except ImportError:
        kmedoids = None
    if kmedoids is not None:
        theirs = cluster(x, "embedding", 5, solver="kmedoids")
        assert ours.loss == pytest.approx(theirs.loss, rel=0.02)
    monkeypatch.setitem(__import__("sys").modules, "kmedoids", None)  # as if not installed
    with pytest.raises(InvalidArgument, match=r"simsearch\[kmedoids\]"):
        cluster(x, "embedding", 5, solver="kmedoids")
    with pytest.raises(InvalidArgument, match="unknown k-medoids solver"):
        cluster(x, "embedding", 5, solver="nope")
