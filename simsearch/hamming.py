"""Hamming-distance joins over 64-bit hashes without an N x N matrix.

``hamming_pairs_unique`` finds every pair within a distance by multi-index hashing:
split the 64 bits into ``m`` chunks; by the pigeonhole principle two codes
within distance ``D`` agree to within ``D // m`` bits on at least one chunk.
Each chunk gets a dense bucket table, every code probes the buckets within
that radius of its own key, and candidates are verified on all 64 bits.
Falls back to block-wise brute force where that is cheaper (large ``D``).
``hamming_join`` does the same between a set of queries and a database.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from .errors import InvalidArgument

HASH_BITS = 64
_MAX_CHUNK_BITS = 24  # a dense table of 2**24 int32 counts is 64 MB
_PAIR_BLOCK = 4_000_000  # candidate pairs verified at once (bounds memory)


def _flip_masks(width: int, radius: int) -> list[int]:
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(width), r):
            masks.append(sum(1 << b for b in bits))
    return masks


def _chunk_widths(m: int) -> list[int]:
    base, extra = divmod(HASH_BITS, m)
    return [base + (1 if i < extra else 0) for i in range(m)]


def _masks_count(width: int, radius: int) -> int:
    return sum(comb(width, r) for r in range(radius + 1))


def _plan(n: int, max_distance: int, n_database: int | None = None) -> int | None:
    """Number of chunks for multi-index hashing, or None where brute force is cheaper: for a
    self-join of ``n`` codes, or for ``n`` queries against ``n_database`` codes.

    The cost model counts probes plus expected candidates under uniform codes.
    Brute force's per-pair cost is weighted by 4, a rough figure that favours the
    probing join; both give the same result, so the weight only affects speed.
    """
    pairs = n * n / 2.0 if n_database is None else float(n) * n_database
    best_m, best_cost = None, 4.0 * pairs
    for m in range(2, 9):
        widths = _chunk_widths(m)
        if max(widths) > _MAX_CHUNK_BITS:
            continue
        radius = max_distance // m
        cost = sum(_masks_count(w, radius) * (n + pairs / 2.0**w) for w in widths)
        if cost < best_cost:
            best_m, best_cost = m, cost
    return best_m


def hamming_edges(codes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``i < j`` whose connected components are those of the graph linking
    every pair with ``popcount(codes[i] ^ codes[j]) <= max_distance``.

    ``codes`` is a 1-d uint64 array. Every pair of distinct values within the
    distance is an edge between the first rows holding them; the other rows
    holding a value are linked to its first row.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    if not 0 <= max_distance < HASH_BITS:
        raise InvalidArgument(f"max distance must be between 0 and {HASH_BITS - 1}, got {max_distance}")
    if not len(codes):  # an index whose every file failed
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values, inverse = np.unique(codes, return_inverse=True)
    ui, uj = hamming_pairs_unique(values, max_distance)
    # expand pairs of distinct values back to the rows carrying them, and add
    # the pairs between rows that share one value
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(values))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    heads = order[starts]
    pi = [heads[ui]]
    pj = [heads[uj]]
    dup = np.flatnonzero(counts > 1)
    if len(dup):
        members = np.repeat(dup, counts[dup] - 1)
        offsets = _ranges(counts[dup] - 1) + 1
        pi.append(heads[members])
        pj.append(order[starts[members] + offsets])
    i = np.concatenate(pi)
    j = np.concatenate(pj)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return lo, hi


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(k) for each k in lengths."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    out = np.arange(total, dtype=np.int64)
    out -= np.repeat(ends - lengths, lengths)
    return out


def hamming_pairs_unique(values: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of distinct codes within ``max_distance``."""
    n = len(values)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = _plan(n, max_distance)
    if m is None:
        return _brute_pairs(values, max_distance)
    found_i, found_j = [], []
    shift = 0
    for width in _chunk_widths(m):
        keys = ((values >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        shift += width
        for i, j in _chunk_pairs(values, keys, width, max_distance // m, max_distance):
            found_i.append(i)
            found_j.append(j)
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate(found_i)
    j = np.concatenate(found_j)
    # a pair close on several chunks is found once per chunk
    key = np.unique(np.minimum(i, j) * n + np.maximum(i, j))
    return key // n, key % n


def _chunk_pairs(values, keys, width, radius, max_distance):
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=1 << width)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    for mask in _flip_masks(width, radius):
        if mask == 0:
            # partners in the same bucket, after this code in sorted order
            first = position + 1
            last = starts[keys] + counts[keys]
            items = np.arange(len(keys))
        else:
            target = keys ^ mask
            # each pair of buckets is visited from its smaller key only
            items = np.flatnonzero((keys < target) & (counts[target] > 0))
            first = starts[target[items]]
            last = first + counts[target[items]]
            if len(items) == 0:
                continue
        if mask == 0:
            keep = last > first
            items, first, last = items[keep], first[keep], last[keep]
        yield from _verify(values, order, items, first, last, max_distance)


def _verify(values, order, items, first, last, max_distance):
    lengths = last - first
    done = 0
    while done < len(items):
        # take as many items as keep the candidate block within bounds
        cum = np.cumsum(lengths[done:])
        stop = done + max(1, int(np.searchsorted(cum, _PAIR_BLOCK, side="right")))
        sl = slice(done, stop)
        done = stop
        n_each = lengths[sl]
        i = np.repeat(items[sl], n_each)
        j = order[np.repeat(first[sl], n_each) + _ranges(n_each)]
        close = np.bitwise_count(values[i] ^ values[j]) <= max_distance
        if close.any():
            yield i[close], j[close]


def _brute_pairs(values: np.ndarray, max_distance: int, block: int = 1024, col_block: int = 16384):
    """Every pair within the distance by direct comparison, in row x column blocks
    (at most ``block * col_block`` distances in memory)."""
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(values), block):
        rows = values[start : start + block]
        for col in range(start, len(values), col_block):
            d = np.bitwise_count(rows[:, None] ^ values[None, col : col + col_block])
            qi, cj = np.nonzero(d <= max_distance)
            qi, cj = qi + start, cj + col
            keep = cj > qi
            found_i.append(qi[keep])
            found_j.append(cj[keep])
    return np.concatenate(found_i), np.concatenate(found_j)


def hamming_join(queries: np.ndarray, database: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (query row, database row) whose codes are within ``max_distance``, each once. The
    probing runs from the queries, so its cost grows with the smaller side when that is ``queries``."""
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    database = np.ascontiguousarray(database, dtype=np.uint64)
    if len(queries) == 0 or len(database) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = _plan(len(queries), max_distance, len(database))
    if m is None:
        return _brute_join(queries, database, max_distance)
    found_q, found_d = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    shift = 0
    for width in _chunk_widths(m):
        chunk = np.uint64((1 << width) - 1)
        q_keys = ((queries >> np.uint64(shift)) & chunk).astype(np.int64)
        d_keys = ((database >> np.uint64(shift)) & chunk).astype(np.int64)
        shift += width
        order = np.argsort(d_keys, kind="stable")
        counts = np.bincount(d_keys, minlength=1 << width)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        for mask in _flip_masks(width, max_distance // m):
            target = q_keys ^ mask
            items = np.flatnonzero(counts[target] > 0)
            first = starts[target[items]]
            for i, j in _verify_join(queries, database, order, items, first, counts[target[items]], max_distance):
                found_q.append(i)
                found_d.append(j)
    # a pair close on several chunks is found once per chunk
    key = np.unique(np.concatenate(found_q) * len(database) + np.concatenate(found_d))
    return key // len(database), key % len(database)


def _verify_join(queries, database, order, items, first, lengths, max_distance):
    done = 0
    while done < len(items):
        cum = np.cumsum(lengths[done:])
        stop = done + max(1, int(np.searchsorted(cum, _PAIR_BLOCK, side="right")))
        n_each = lengths[done:stop]
        i = np.repeat(items[done:stop], n_each)
        j = order[np.repeat(first[done:stop], n_each) + _ranges(n_each)]
        done = stop
        close = np.bitwise_count(queries[i] ^ database[j]) <= max_distance
        if close.any():
            yield i[close], j[close]


def _brute_join(queries: np.ndarray, database: np.ndarray, max_distance: int, block: int = 1024,
                col_block: int = 16384):
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(queries), block):
        for col in range(0, len(database), col_block):
            d = np.bitwise_count(queries[start : start + block, None] ^ database[None, col : col + col_block])
            qi, dj = np.nonzero(d <= max_distance)
            found_i.append(qi + start)
            found_j.append(dj + col)
    return np.concatenate(found_i), np.concatenate(found_j)


def connected_groups(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
    """Connected components with more than one member, largest first."""
    if len(i) == 0:
        return []
    from scipy.sparse import coo_matrix  # noqa: PLC0415 - scipy.sparse costs 0.15 s to import
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(sizes)[:-1]
    groups = [g for g in np.split(order, bounds) if len(g) > 1]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return groups
