"""k-medoids clustering of embeddings (cosine distance) or hashes (Hamming distance).

Each cluster is represented by a real image, its medoid. Below ``EXACT_BELOW``
images the swap solver runs on the full N x N distance matrix; above it a
CLARA-style scheme runs it on several random samples, keeps the medoids with the
lowest total distance over every image, and assigns every image to its nearest
medoid through FAISS.

Solvers: ``pam`` (the default: ``simsearch.pam``, FasterPAM-style swaps written
for this package, Apache-2.0) and ``kmedoids`` (the FasterPAM of the GPL-3.0
``kmedoids`` package, an optional extra: ``pip install simsearch[kmedoids]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidArgument
from .names import MAX_SEED

EXACT_BELOW = 5_000  # N x N float32 is 100 MB at 5,000 images
CLARA_SAMPLES = 5
CLARA_SAMPLE_SIZE = 4_000
AUTO_K = range(2, 21)  # --auto tries these k, bounded by the number of images
SOLVERS = ("pam", "kmedoids")
_ASSIGN_BLOCK = 65_536


@dataclass
class Clustering:
    """Labels, medoids (row numbers) and each row's distance to its medoid."""

    labels: np.ndarray
    medoids: np.ndarray
    distances: np.ndarray
    k: int
    scheme: str  # "exact" (FasterPAM on every image) or "clara" (sampled)
    loss: float
    silhouette: float | None = None
    scores: dict = field(default_factory=dict)  # k -> silhouette, for --auto


def pairwise(a: np.ndarray, b: np.ndarray, by: str) -> np.ndarray:
    """Distances between rows: 1 - cosine for unit vectors, bit count for uint64 hashes."""
    if by == "embedding":
        return np.clip(1.0 - a @ b.T, 0.0, 2.0).astype(np.float32)
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.float32)


def cluster(features: np.ndarray, by: str, k: int | None = None, *, auto: bool = False, seed: int = 0,
            exact_below: int = EXACT_BELOW, solver: str = "pam") -> Clustering:
    """Cluster rows of ``features`` (unit vectors, or uint64 hashes when ``by`` is a hash)."""
    n = len(features)
    solve = _solver(solver)
    if auto == (k is not None):
        raise InvalidArgument("give either k or auto")
    if n < 2:
        raise InvalidArgument(f"clustering needs at least 2 indexed images, the index has {n}")
    if k is not None and not 1 <= k <= n:
        raise InvalidArgument(f"k must be between 1 and the number of images ({n}), got {k}")
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    if n < exact_below:
        return _exact(features, by, k, seed, solve)
    return _clara(features, by, k, seed, solve)


def _solver(name: str):
    """(distances, k, seed) -> (medoids, labels, loss), and the silhouette of a labelling."""
    if name == "pam":
        from . import pam  # noqa: PLC0415

        return lambda diss, k, seed: pam.fasterpam(diss, k, seed), pam.silhouette
    if name != "kmedoids":
        raise InvalidArgument(f"unknown k-medoids solver {name!r}; choose one of {', '.join(SOLVERS)}")
    try:
        import kmedoids  # noqa: PLC0415 - GPL-3.0: an optional extra
    except ImportError:
        raise InvalidArgument("the kmedoids solver needs the kmedoids package (GPL-3.0): "
                              "pip install 'simsearch[kmedoids]'") from None
    return (lambda diss, k, seed: kmedoids.fasterpam(diss.astype(np.float64), k, random_state=seed, n_cpu=1),
            lambda diss, labels: float(kmedoids.silhouette(diss.astype(np.float64), labels)[0]))


def _exact(features, by, k, seed, solve) -> Clustering:
    fit, silhouette = solve
    diss = pairwise(features, features, by)
    if k is not None:
        return _result(fit(diss, k, seed), diss, k, "exact")
    scores, best = {}, None
    for trial in AUTO_K:
        if trial >= len(features):
            break
        result = fit(diss, trial, seed)
        scores[trial] = silhouette(diss, np.asarray(result.labels, dtype=np.int64))
        if best is None or scores[trial] > scores[best[0]]:
            best = (trial, result)
    out = _result(best[1], diss, best[0], "exact")
    out.scores = scores
    out.silhouette = scores[best[0]]
    return out


def _result(result, diss, k, scheme) -> Clustering:
    labels = np.asarray(result.labels, dtype=np.int64)
    medoids = np.asarray(result.medoids, dtype=np.int64)
    distances = diss[np.arange(len(labels)), medoids[labels]]
    return Clustering(labels, medoids, distances.astype(np.float32), k, scheme, float(distances.sum()))


def _clara(features, by, k, seed, solve) -> Clustering:
    """Medoids from FasterPAM on samples; the set with the least total distance over every image wins."""
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(CLARA_SAMPLES):
        rows = np.sort(rng.choice(len(features), CLARA_SAMPLE_SIZE, replace=False))
        found = _exact(features[rows], by, k, int(rng.integers(2**31)), solve)
        medoids = rows[found.medoids]
        labels, distances = assign(features, features[medoids], by)
        loss = float(distances.sum())
        if best is None or loss < best.loss:
            best = Clustering(labels, medoids, distances, found.k, "clara", loss, found.silhouette, found.scores)
    return best


def assign(features: np.ndarray, medoids: np.ndarray, by: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest medoid and its distance, through a FAISS index over the medoids."""
    import faiss  # noqa: PLC0415

    if by == "embedding":
        index = faiss.IndexFlatIP(medoids.shape[1])
        index.add(np.ascontiguousarray(medoids, dtype=np.float32))
    else:
        index = faiss.IndexBinaryFlat(64)
        index.add(np.ascontiguousarray(medoids, dtype=np.uint64).view(np.uint8).reshape(-1, 8))
    labels = np.empty(len(features), dtype=np.int64)
    distances = np.empty(len(features), dtype=np.float32)
    for start in range(0, len(features), _ASSIGN_BLOCK):
        block = features[start : start + _ASSIGN_BLOCK]
        if by == "embedding":
            sims, nearest = index.search(np.ascontiguousarray(block, dtype=np.float32), 1)
            dist = np.clip(1.0 - sims[:, 0], 0.0, 2.0)
        else:
            dist, nearest = index.search(np.ascontiguousarray(block, dtype=np.uint64).view(np.uint8).reshape(-1, 8), 1)
            dist = dist[:, 0]
        labels[start : start + len(block)] = nearest[:, 0]
        distances[start : start + len(block)] = dist
    return labels, distances
