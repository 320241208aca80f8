import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simsearch.hamming import (
    _brute_join,
    _brute_pairs,
    _plan,
    connected_groups,
    hamming_edges,
    hamming_join,
    hamming_pairs_unique,
)


def _clustered(seed: int, n: int, flips: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64) * np.uint64(2)
    m = n // 3
    src = rng.integers(0, n - m, size=m)
    noise = np.zeros(m, dtype=np.uint64)
    for _ in range(flips):
        noise |= (np.uint64(1) << rng.integers(0, 64, size=m).astype(np.uint64)) * (rng.random(m) < 0.5).astype(np.uint64)
    codes[n - m :] = codes[src] ^ noise
    codes[: n // 20] = codes[n // 20 : 2 * (n // 20)]  # exact copies
    return codes


def _groups(n, i, j):
    return sorted(tuple(sorted(g.tolist())) for g in connected_groups(n, i, j))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 600), distance=st.integers(0, 24))
def test_multi_index_hashing_equals_brute_force(seed, n, distance):
    codes = _clustered(seed, n, distance + 2)
    values = np.unique(codes)
    got = set(zip(*(a.tolist() for a in hamming_pairs_unique(values, distance))))
    want = set(zip(*(a.tolist() for a in _brute_pairs(values, distance))))
    assert got == want
    assert _groups(n, *hamming_edges(codes, distance)) == _groups(n, *_brute_pairs(codes, distance))


def test_large_input_uses_chunks_and_stays_exact():
    codes = _clustered(7, 20_000, 8)
    assert _plan(len(np.unique(codes)), 8) is not None  # the multi-index join runs, not brute force
    assert _groups(len(codes), *hamming_edges(codes, 8)) == _groups(len(codes), *_brute_pairs(codes, 8))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3000), distance=st.integers(0, 12))
def test_join_equals_brute_force(seed, n, distance):
    codes = _clustered(seed, n + 1, distance + 2)
    queries, database = codes[: max(1, n // 5)], codes  # queries fewer than the database, as pairs.py joins
    got = set(zip(*(a.tolist() for a in hamming_join(queries, database, distance))))
    want = set(zip(*(a.tolist() for a in _brute_join(queries, database, distance))))
    assert got == want
    assert len(got) >= len(queries)  # every query finds at least itself


def test_large_join_uses_chunks():
    codes = _clustered(3, 40_000, 8)
    assert _plan(8_000, 8, 40_000) is not None
    got = set(zip(*(a.tolist() for a in hamming_join(codes[:8_000], codes, 8))))
    assert got == set(zip(*(a.tolist() for a in _brute_join(codes[:8_000], codes, 8))))


def test_no_codes_no_edges():
    """An index whose every file failed has no hash codes: `duplicates --by phash` raised IndexError there."""
    i, j = hamming_edges(np.zeros(0, np.uint64), 8)
    assert len(i) == len(j) == 0
