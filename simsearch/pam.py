"""k-medoids by swaps, written for simsearch from the FasterPAM paper (Schubert & Rousseeuw,
"Fast and eager k-medoids clustering", Information Systems 101, 2021), Apache-2.0 like the rest
of the package. The GPL-3.0 ``kmedoids`` package remains an optional solver.

Each point keeps its nearest and second-nearest medoid. The change in total distance of
swapping medoid ``m`` for candidate ``c`` is then, for every ``m`` at once,

    sum over all points of min(d(o, c) - d1(o), 0)
    + sum over the points of ``m`` of clip(d(o, c) - d1(o), 0, d2(o) - d1(o))

which is evaluated for a block of candidates as one matrix product. The start is k-means++
seeding (FasterPAM starts at random; a spread start needs fewer swaps). As in FasterPAM, the best
improving swap is made at once (eagerly) and the scan goes on; it stops when a whole pass over
the candidates improves nothing (a local optimum of single swaps, PAM's criterion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BLOCK = 256  # candidates evaluated together
_MAX_PASSES = 100


@dataclass
class PamResult:
    medoids: np.ndarray  # row numbers
    labels: np.ndarray  # index into medoids, per row
    loss: float  # total distance of the rows to their medoids


def fasterpam(diss: np.ndarray, k: int, seed: int = 0) -> PamResult:
    """k medoids of the rows of a square distance matrix (seeded)."""
    diss = np.asarray(diss, dtype=np.float32)
    n = len(diss)
    medoids = _spread_start(diss, k, np.random.default_rng(seed))
    near, second, d1, d2 = _nearest_two(diss, medoids)
    members = _one_hot(near, k)
    tolerance = 1e-6 * max(float(d1.sum()), 1.0)
    for _ in range(_MAX_PASSES):
        swapped = False
        for start in range(0, n, _BLOCK):
            candidates = np.setdiff1d(np.arange(start, min(n, start + _BLOCK)), medoids, assume_unique=True)
            if len(candidates) == 0:
                continue
            change = _swap_changes(diss[candidates], members, d1, d2)
            c, m = np.unravel_index(np.argmin(change), change.shape)
            if change[c, m] < -tolerance:
                medoids[m] = candidates[c]
                # only the points that lose a medoid they used, or come nearer to the new one, change
                moved = np.flatnonzero((near == m) | (second == m) | (diss[:, medoids[m]] < d2))
                members[moved, near[moved]] = 0.0
                near[moved], second[moved], d1[moved], d2[moved] = _nearest_two(diss[moved], medoids)
                members[moved, near[moved]] = 1.0
                swapped = True
        if not swapped:
            break
    return PamResult(medoids.copy(), near, float(d1.sum()))


def _spread_start(diss: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on the distances: each next medoid drawn with probability growing with its
    distance from those chosen, so the swaps start from medoids spread over the data."""
    medoids = [int(rng.integers(len(diss)))]
    nearest = diss[medoids[0]].astype(np.float64)
    for _ in range(1, k):
        weights = nearest**2
        total = weights.sum()
        if total <= 0:  # every point sits on a medoid: take any others
            rest = np.setdiff1d(np.arange(len(diss)), medoids)
            medoids.extend(rng.choice(rest, k - len(medoids), replace=False).tolist())
            break
        medoids.append(int(rng.choice(len(diss), p=weights / total)))
        nearest = np.minimum(nearest, diss[medoids[-1]])
    return np.array(medoids, dtype=np.int64)


def _nearest_two(diss: np.ndarray, medoids: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each row's nearest and second-nearest medoid (indices into ``medoids``) and their distances."""
    to_medoids = diss[:, medoids]
    rows = np.arange(len(diss))
    near = np.argmin(to_medoids, axis=1)
    d1 = to_medoids[rows, near]
    if len(medoids) == 1:
        return near, np.zeros_like(near), d1, np.full(len(diss), np.inf, dtype=np.float32)
    to_medoids[rows, near] = np.inf
    second = np.argmin(to_medoids, axis=1)
    return near, second, d1, to_medoids[rows, second]


def _swap_changes(block: np.ndarray, members: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """(candidates, k): the change in total distance of swapping each medoid for each candidate."""
    delta = block - d1
    shared = np.minimum(delta, 0.0).sum(axis=1)
    own = np.clip(delta, 0.0, d2 - d1)
    return shared[:, None] + own @ members


def _one_hot(labels: np.ndarray, k: int, dtype=np.float32) -> np.ndarray:
    out = np.zeros((len(labels), k), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def silhouette(diss: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a labelling (a point alone in its cluster scores 0)."""
    n = len(labels)
    members = _one_hot(labels, int(labels.max()) + 1, np.float64)
    counts = members.sum(axis=0)
    sums = np.asarray(diss, dtype=np.float64) @ members
    rows = np.arange(n)
    alone = counts[labels] <= 1
    a = sums[rows, labels] / np.maximum(counts[labels] - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(counts > 0, sums / counts, np.inf)
    means[rows, labels] = np.inf
    b = means.min(axis=1)
    s = np.where(alone | ~np.isfinite(b), 0.0, (b - a) / np.maximum(np.maximum(a, b), 1e-12))
    return float(s.mean())
