"""Perceptual hash methods: pHash, dHash, wHash and aHash from imagehash, 64 bits each.

All four are computed from one small grey image made from the decoded RGB
image, so each image is reduced once. wHash uses a fixed 64-pixel scale
(imagehash's default scales with the image, which gives resized copies of one
photo different hashes).

pHash is also computed for the image's 8 rotations and flips (the dihedral
group) from the same DCT: mirroring a signal multiplies its k-th DCT-II
coefficient by (-1)^k and transposing the image transposes its coefficients,
so the variants cost no extra decode, resize or transform.
"""

from __future__ import annotations

from collections.abc import Callable

import imagehash
import numpy as np
from PIL import Image

from .errors import InvalidArgument
from .names import HASH_METHODS

WORK_SIZE = 128  # side of the grey image all hashes are computed from

_PHASH_SIZE, _PHASH_INPUT = 8, 32  # imagehash's defaults: 8x8 low frequencies of a 32x32 DCT
# the dihedral group as (transpose, flip rows, flip columns); DIHEDRAL[0] is the identity
DIHEDRAL = tuple((t, r, c) for t in (False, True) for r in (False, True) for c in (False, True))
_SIGNS = (-1.0) ** np.arange(_PHASH_SIZE)

_WHASH_SCALE = 64  # wHash's fixed image side (see the module docstring)


def _whash(grey: Image.Image) -> np.ndarray:
    """The bits of ``imagehash.whash(grey, hash_size=8, image_scale=64)``, without its wavelet round trip
    where the answer is certain. Its steps (remove the 6-level Haar low band, then compare the 3-level
    Haar low band with its median) compare the 8x8 block sums of the 64x64 image with their median:
    removing the low band subtracts the mean, and a Haar low band is a scaled block sum, so neither
    moves a value across the median. The block sums are integers: where the median falls between two
    of them, imagehash's floating-point result is the same bits (its rounding is 1e-14, a step between
    sums 5e-4). On a tie at the median (flat images) its rounding decides, so imagehash runs itself."""
    small = np.asarray(grey.convert("L").resize((_WHASH_SCALE, _WHASH_SCALE), Image.Resampling.LANCZOS),
                       dtype=np.int64)
    side = _WHASH_SCALE // 8
    sums = small.reshape(8, side, 8, side).sum(axis=(1, 3))
    ordered = np.sort(sums, axis=None)
    if ordered[31] == ordered[32]:
        return imagehash.whash(grey, hash_size=8, image_scale=_WHASH_SCALE).hash
    return 2 * sums > ordered[31] + ordered[32]


_HASHERS: dict[str, Callable[[Image.Image], np.ndarray]] = {
    "dhash": lambda g: imagehash.dhash(g, hash_size=8).hash,
    "whash": _whash,
    "ahash": lambda g: imagehash.average_hash(g, hash_size=8).hash,
}


def check_method(method: str) -> str:
    if method not in HASH_METHODS:
        raise InvalidArgument(f"unknown hash method {method!r}; choose one of {', '.join(HASH_METHODS)}")
    return method


def work_image(rgb: Image.Image) -> Image.Image:
    """The grey image every hash is computed from."""
    grey = rgb.convert("L")
    grey.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return grey


def hash_image(rgb: Image.Image) -> dict[str, int]:
    """All four hashes of an RGB image, as signed 64-bit integers (as stored)."""
    return {k: v for k, v in image_hashes(rgb).items() if k != "phash_dihedral"}


def image_hashes(rgb: Image.Image) -> dict:
    """The four hashes plus ``phash_dihedral``: the pHash of all 8 rotations and flips,
    packed as 8 little-endian uint64 (the identity's first, equal to ``phash``)."""
    return work_hashes(work_image(rgb))


def work_hashes(grey: Image.Image) -> dict:
    """``image_hashes`` from the image's grey work image (``work_image``)."""
    variants = dihedral_phashes(grey)
    out = {"phash": to_signed(int(variants[0]))}
    out.update({name: to_signed(_bits_to_uint(fn(grey))) for name, fn in _HASHERS.items()})
    out["phash_dihedral"] = variants.astype("<u8").tobytes()
    return out


def dihedral_phashes(grey: Image.Image) -> np.ndarray:
    """pHash (as imagehash computes it) of the 8 transforms in ``DIHEDRAL``, as uint64."""
    import scipy.fftpack  # noqa: PLC0415 - as imagehash does

    pixels = np.asarray(grey.resize((_PHASH_INPUT, _PHASH_INPUT), Image.Resampling.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:_PHASH_SIZE, :_PHASH_SIZE]
    # the four sign patterns; a transposed variant holds the same values as the pattern with its flips
    # swapped, turned, so it shares that pattern's median (the signs are exact: the same bits as flipping it)
    signed = {(rows, cols): low * (_SIGNS[:, None] if rows else 1.0) * (_SIGNS[None, :] if cols else 1.0)
              for rows in (False, True) for cols in (False, True)}
    medians = {key: np.median(block) for key, block in signed.items()}
    codes = np.empty(len(DIHEDRAL), dtype=np.uint64)
    for n, (transpose, flip_rows, flip_cols) in enumerate(DIHEDRAL):
        key = (flip_cols, flip_rows) if transpose else (flip_rows, flip_cols)
        block = signed[key].T if transpose else signed[key]
        codes[n] = _bits_to_uint(block > medians[key])
    return codes


def _bits_to_uint(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(bool).ravel()).tobytes(), "big")


def to_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def to_uint64(values) -> np.ndarray:
    """Stored signed hashes to a uint64 array."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
