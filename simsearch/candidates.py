"""Candidate pairs kept between runs, in the index folder.

Searching for candidates (each image's nearest neighbours, the rotated pHash join, equal digests) is most of a
``duplicates`` run that verifies nothing new: about 19 of 28 s at 100,000 images. Its result depends only on the
indexed data and the candidate settings, so a run keeps it in ``INDEX/candidates/pairs-<model>.npz`` (the
pairs, every row's crowding, the cosines the search found: 16 bytes a pair, 39 MB at 100,000 images) with a
stamp (the data version read before the collection was loaded, the collection's ids, the settings), and a later
run on the same data (another level or cut, ``--explain``, ``--move-to``, a report) reads it instead. The pairs'
features are computed from it as from a fresh search (``pairs.pair_features``, half a second at 100,000
images), so they are the same. The file is written whole to a temporary name and then renamed, so two processes
saving at once both leave a valid file; one that cannot be read is ignored, one that cannot be written (a full
disk, a read-only index) is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import numpy as np

from . import pairs as pairs_module
from .pairs import Collection, Pairs
from .reads import Reads
from .store import file_stem

VERSION = 2  # how candidates are searched and kept: a kept file of another version is not read


def candidate_pairs(reads: Reads, col: Collection, model: str | None, version: int) -> Pairs:
    """``pairs.candidate_pairs(col)``, its search read from the kept file where it was made from the same data
    (``version``: the data version read before ``col`` was loaded), else searched now and kept."""
    path = reads.directory / "candidates" / f"pairs-{file_stem(model) if model else 'hashes'}.npz"
    settings = [pairs_module.NEIGHBOURS, pairs_module.DENSITY_K, pairs_module.CANDIDATE_PHASH,
                pairs_module.EXACT_KNN_BELOW, VERSION]
    stamp = json.dumps({"data_version": version, "model": model, "rows": len(col.ids),
                        "ids": hashlib.sha256(col.ids.astype("<i8").tobytes()).hexdigest(), "settings": settings},
                       sort_keys=True)
    found = _read(path, stamp)
    if found is None:
        found = pairs_module.candidate_search(col)
        if not reads.read_only:
            _write(path, stamp, found)
    return pairs_module.pair_features(col, *found)


def _read(path, stamp: str) -> tuple[np.ndarray, ...] | None:
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["stamp"]) != stamp:
                return None
            return (saved["left"].astype(np.int64), saved["right"].astype(np.int64), saved["density"],
                    saved["cosines"])
    except (OSError, ValueError, KeyError, EOFError):
        return None  # absent, damaged or not ours: searched again


def _write(path, stamp: str, found: tuple[np.ndarray, ...]) -> None:
    left, right, density, cosines = found
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(exist_ok=True)
        np.savez(tmp, stamp=np.array(stamp), left=left.astype(np.int32), right=right.astype(np.int32),
                 density=density, cosines=cosines)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a partial file on a full disk
            tmp.unlink(missing_ok=True)
