"""Seeded synthetic hash collections."""

import numpy as np


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=n).astype(np.uint64)
    near = n // 10
    src = rng.integers(0, n - near, size=near)
    noise = np.zeros(near, dtype=np.uint64)
    for _ in range(8):
        noise |= (np.uint64(1) << rng.integers(0, 64, size=near).astype(np.uint64)) * (
            rng.random(near) < 0.5).astype(np.uint64)
    codes[n - near :] = codes[src] ^ noise
    copies = n // 20
    codes[:copies] = codes[copies : 2 * copies]
    return codes
