"""Candidate pairs kept between runs, in the index folder.

Generating the candidates (each image's nearest neighbours, the rotated pHash join, equal digests) and their
features is most of a ``duplicates`` run that verifies nothing new: about 20 of 28 s at 100,000 images. They
depend only on the indexed data and the candidate settings, so a run keeps them in
``INDEX/candidates/pairs-<model>.npz`` with a stamp (the data version read before the collection was loaded,
the collection's ids, the settings), and a later run on the same data (another level or cut, ``--explain``,
``--move-to``, a report) reads them instead. The file is written whole to a temporary name and
then renamed, so two processes saving at once both leave a valid file; one that cannot be read is ignored,
one that cannot be written (a full disk, a read-only index) is not kept.
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

VERSION = 1  # how candidates are made: a kept file of another version is not read


def candidate_pairs(reads: Reads, col: Collection, model: str | None, version: int) -> Pairs:
    """``pairs.candidate_pairs(col)``, read from the kept file where it was made from the same data (``version``:
    the data version read before ``col`` was loaded), else computed and kept."""
    path = reads.directory / "candidates" / f"pairs-{file_stem(model) if model else 'hashes'}.npz"
    settings = [pairs_module.NEIGHBOURS, pairs_module.DENSITY_K, pairs_module.CANDIDATE_PHASH,
                pairs_module.EXACT_KNN_BELOW, list(pairs_module.FEATURES), VERSION]
    stamp = json.dumps({"data_version": version, "model": model, "rows": len(col.ids),
                        "ids": hashlib.sha256(col.ids.astype("<i8").tobytes()).hexdigest(), "settings": settings},
                       sort_keys=True)
    kept = _read(path, stamp)
    if kept is not None:
        return kept
    found = pairs_module.candidate_pairs(col)
    if not reads.read_only:
        _write(path, stamp, found)
    return found


def _read(path, stamp: str) -> Pairs | None:
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["stamp"]) != stamp:
                return None
            return Pairs(saved["left"].astype(np.int64), saved["right"].astype(np.int64), saved["exact"],
                         saved["features"])
    except (OSError, ValueError, KeyError, EOFError):
        return None  # absent, damaged or not ours: made again


def _write(path, stamp: str, found: Pairs) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(exist_ok=True)
        np.savez(tmp, stamp=np.array(stamp), left=found.left.astype(np.int32), right=found.right.astype(np.int32),
                 exact=found.exact, features=found.features)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a partial file on a full disk
            tmp.unlink(missing_ok=True)
