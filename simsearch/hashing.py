"""Perceptual hash methods: pHash, dHash, wHash and aHash from imagehash, 64 bits each.

All four are computed from one small grey image made from the decoded RGB
image, so each image is reduced once. wHash uses a fixed 64-pixel scale
(imagehash's default scales with the image, which gives resized copies of one
photo different hashes).
"""

from __future__ import annotations

from collections.abc import Callable

import imagehash
import numpy as np
from PIL import Image

from .errors import InvalidArgument
from .schema import HASH_METHODS

WORK_SIZE = 128  # side of the grey image all hashes are computed from

_HASHERS: dict[str, Callable[[Image.Image], imagehash.ImageHash]] = {
    "phash": lambda g: imagehash.phash(g, hash_size=8),
    "dhash": lambda g: imagehash.dhash(g, hash_size=8),
    "whash": lambda g: imagehash.whash(g, hash_size=8, image_scale=64),
    "ahash": lambda g: imagehash.average_hash(g, hash_size=8),
}


def check_method(method: str) -> str:
    if method not in _HASHERS:
        raise InvalidArgument(f"unknown hash method {method!r}; choose one of {', '.join(HASH_METHODS)}")
    return method


def work_image(rgb: Image.Image) -> Image.Image:
    """The grey image every hash is computed from."""
    grey = rgb.convert("L")
    grey.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return grey


def hash_image(rgb: Image.Image) -> dict[str, int]:
    """All four hashes of an RGB image, as signed 64-bit integers (as stored)."""
    grey = work_image(rgb)
    return {name: to_signed(_bits_to_uint(fn(grey).hash)) for name, fn in _HASHERS.items()}


def _bits_to_uint(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(bool).ravel()).tobytes(), "big")


def to_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def to_uint64(values) -> np.ndarray:
    """Stored signed hashes to a uint64 array."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
