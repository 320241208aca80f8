"""Derived FAISS binary indexes over the stored hashes, rebuilt when stale.

Each method's index lives in ``faiss/<method>.index`` with the row ids beside
it and a stamp naming the database data version it was built from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from .hamming import HASH_BITS


class BinaryIndex:
    def __init__(self, index: faiss.IndexBinary, ids: np.ndarray):
        self.index = index
        self.ids = ids

    def search(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        code = np.array([query], dtype=np.int64).view(np.uint8).reshape(1, HASH_BITS // 8)
        distances, rows = self.index.search(code, min(k, len(self.ids)))
        keep = rows[0] >= 0
        return self.ids[rows[0][keep]], distances[0][keep]


def build(codes: np.ndarray) -> faiss.IndexBinary:
    index = faiss.IndexBinaryFlat(HASH_BITS)
    if len(codes):
        index.add(np.ascontiguousarray(codes, dtype=np.uint64).view(np.uint8).reshape(-1, HASH_BITS // 8))
    return index


def binary_index(idx, method: str) -> BinaryIndex:
    """The FAISS index for ``method``, loaded from disk or rebuilt if stale."""
    folder = Path(idx.directory) / "faiss"
    stamp = {"data_version": idx.data_version(), "method": method}
    stamp_file, index_file, ids_file = (folder / f"{method}{ext}" for ext in (".json", ".index", ".ids.npy"))
    try:
        if json.loads(stamp_file.read_text()) == stamp:
            return BinaryIndex(faiss.read_index_binary(str(index_file)), np.load(ids_file))
    except (OSError, ValueError, RuntimeError):
        pass  # missing or damaged: rebuild below
    ids, codes = idx.hash_codes(method)
    index = build(codes)
    folder.mkdir(exist_ok=True)
    _replace(index_file, lambda tmp: faiss.write_index_binary(index, tmp))
    _replace(ids_file, lambda tmp: _save_npy(tmp, ids))
    _replace(stamp_file, lambda tmp: Path(tmp).write_text(json.dumps(stamp)))
    return BinaryIndex(index, ids)


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def _replace(target: Path, write) -> None:
    """Write through a temporary file so a crash never leaves half a file."""
    tmp = target.with_name(target.name + ".tmp")
    write(str(tmp))
    os.replace(tmp, target)
