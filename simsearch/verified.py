"""Geometric verifications kept between runs, in the index folder.

Verification is the long part of ``duplicates`` on a large collection, and its result depends only on
the two files' contents and the verification settings. So each verified pair is kept under the SHA-256
of its two files, in the order verified, in ``INDEX/verified/pairs-<settings>-<decode>.npy``: a later
run (another level or cut, ``explain`` of a grouped pair, the server after new files were indexed)
verifies only the pairs it has not seen. Entries whose files are gone are dropped when the file is
rewritten, and a file of another layout or settings is never read. The file is replaced atomically:
two processes saving at once both leave a valid file (the later one's). A file that cannot be read is
treated as empty; one that cannot be written (a full disk) is skipped and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from . import verify
from .verify import Geometry, Verification

_RECORD = np.dtype([("a", "u1", (32,)), ("b", "u1", (32,)), ("matches", "<i4"), ("inliers", "<i4"), ("keypoints", "<i4"),
                    ("residual", "<f8"), ("fitted", "?"), ("matrix", "<f8", (6,)), ("a_size", "<i4", (2,)),
                    ("a_scale", "<f8"), ("b_size", "<i4", (2,)), ("b_scale", "<f8"), ("flipped", "?"),
                    ("spread", "<f8"), ("agreement", "<f8"), ("overhang", "<f8")])


def settings_key() -> str:
    """A short digest of every setting a verification depends on: a change starts a new file."""
    # the last number versions how pairs are verified (4: a JPEG's luminance decoded alone, the mirror image's
    # descriptors computed at the mirrored keypoints; 5: pairs turned by ``verify.orient``; 6: the inliers' spread
    # measured; 7: the pictures' agreement measured; 8: the residual over the keypoints' size, not the diagonal; 9: the
    # pictures' overhang measured):
    # verifications of an earlier method are never read
    settings = (verify.WORK_SIDE, verify.ORB_FEATURES, verify.GRID, verify.CELL_CAP, verify.DETECTED, verify.RATIO,
                verify.RANSAC_PIXELS, verify.MIN_MATCHES, verify.THUMB, verify.THUMB_BLUR, verify.BLOCK,
                verify.BLOCK_STD, verify.MIN_BLOCKS, verify.OVERHANG_MARGIN,
                verify.OVERHANG_MIN_BLOCKS, 9)
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:12]


class VerifiedPairs:
    """The kept verifications of one index, looked up and added by collection rows."""

    def __init__(self, path: Path, digests: list[str], *, writable: bool = True,
                 kept: dict[tuple[bytes, bytes], Verification] | None = None):
        """``path``: the file; ``digests``: each collection row's SHA-256 (hex; empty where a row has no file);
        ``writable=False`` reads what is kept and never writes; ``kept``: what another instance read."""
        self.path = path
        self.writable = writable
        self._digests = [bytes.fromhex(d) if d else b"" for d in digests]
        self._kept: dict[tuple[bytes, bytes], Verification] = _read(path) if kept is None else kept
        self._added = 0
        self._saved_at = time.monotonic()

    @classmethod
    def of_index(cls, directory: Path, digests: list[str], *, full_decode: bool, writable: bool) -> VerifiedPairs:
        name = f"pairs-{settings_key()}-{'full' if full_decode else 'draft'}.npy"
        return cls(directory / "verified" / name, digests, writable=writable)

    def viewed_by(self, digests: list[str]) -> VerifiedPairs:
        """The same kept verifications, looked up by the rows of another collection (``digests``), read only."""
        return VerifiedPairs(self.path, digests, writable=False, kept=self._kept)

    def lookup(self, left: list[int], right: list[int]) -> list[Verification | None]:
        return [self._kept.get((self._digests[a], self._digests[b])) if self._digests[a] and self._digests[b] else None
                for a, b in zip(left, right)]

    def add(self, left: list[int], right: list[int], checks: list[Verification]) -> None:
        for a, b, check in zip(left, right, checks):
            if self._digests[a] and self._digests[b]:
                self._kept[(self._digests[a], self._digests[b])] = check
                self._added += 1

    def checkpoint(self, every_s: float) -> None:
        """Save if ``every_s`` seconds have passed since the last save (or since this was made): a long run
        that is interrupted keeps what it verified until then."""
        if time.monotonic() - self._saved_at >= every_s:
            self.save()
            self._saved_at = time.monotonic()

    def save(self) -> None:
        """Write what this run added, merged with what another process may have saved meanwhile, and
        only for files still in the collection."""
        if not self.writable or not self._added:
            return
        current = set(self._digests)
        merged = {**_read(self.path), **self._kept}
        kept = {key: check for key, check in merged.items() if key[0] in current and key[1] in current}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                np.save(fh, _to_records(kept), allow_pickle=False)
            os.replace(tmp, self.path)
            for stale in self.path.parent.glob("pairs-*.npy"):  # kept under other settings: never read again
                if stale != self.path:
                    stale.unlink(missing_ok=True)
        except OSError:
            with contextlib.suppress(OSError):  # a partial file on a full disk; nothing where no folder was made
                tmp.unlink(missing_ok=True)
            return  # a cache that cannot be written costs time next run, nothing else
        self._added = 0


def _read(path: Path) -> dict[tuple[bytes, bytes], Verification]:
    try:
        records = np.load(path, allow_pickle=False)
        if records.dtype != _RECORD:
            return {}
    except (OSError, ValueError, EOFError):
        return {}  # absent, unreadable or not ours: start afresh
    return {(r["a"].tobytes(), r["b"].tobytes()): _verification(r) for r in records}


def _verification(r) -> Verification:
    geometry = None
    if r["fitted"]:
        geometry = Geometry(tuple(float(v) for v in r["matrix"]), tuple(int(v) for v in r["a_size"]),
                            float(r["a_scale"]), tuple(int(v) for v in r["b_size"]), float(r["b_scale"]),
                            bool(r["flipped"]))
    return Verification(int(r["matches"]), int(r["inliers"]), int(r["keypoints"]), geometry, float(r["residual"]),
                        float(r["spread"]), float(r["agreement"]), float(r["overhang"]))


def _to_records(kept: dict[tuple[bytes, bytes], Verification]) -> np.ndarray:
    out = np.zeros(len(kept), dtype=_RECORD)
    for n, ((a, b), check) in enumerate(kept.items()):
        g = check.geometry
        out[n] = (np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8), check.matches, check.inliers,
                  check.keypoints, check.residual, g is not None, g.matrix if g else (0.0,) * 6,
                  g.a_size if g else (0, 0), g.a_scale if g else 0.0, g.b_size if g else (0, 0),
                  g.b_scale if g else 0.0, bool(g and g.flipped), check.spread, check.agreement,
                  check.overhang)
    return out
