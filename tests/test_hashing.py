"""pHash of the 8 rotations and flips, derived from one DCT, agrees with imagehash
computing pHash on each transformed image; every stored hash is imagehash's, bit for bit."""

import imagehash
import numpy as np
import pytest
import scipy.fftpack
from PIL import Image, ImageDraw

from simsearch.hashing import (
    DIHEDRAL,
    _bits_to_uint,
    dihedral_phashes,
    image_hashes,
    to_uint64,
    work_image,
)
from simsearch.imageio import decode_file

from .conftest import REPO, shared


@pytest.mark.parametrize("name", ["chelsea.png", "rocket.jpg", "text.png"])
def test_dihedral_phashes_equal_imagehash_on_transformed_images(name):
    grey = work_image(Image.open(REPO / "samples" / "images" / name).convert("RGB"))
    codes = dihedral_phashes(grey)
    pixels = np.asarray(grey)
    for code, (transpose, flip_rows, flip_cols) in zip(codes, DIHEDRAL):
        turned = pixels.T if transpose else pixels
        turned = turned[::-1] if flip_rows else turned
        turned = turned[:, ::-1] if flip_cols else turned
        want = _bits_to_uint(imagehash.phash(Image.fromarray(np.ascontiguousarray(turned))).hash)
        # equal up to resampling rounding: PIL resizes rows then columns, so a transposed image rounds differently
        assert (int(code) ^ want).bit_count() <= 2
    assert len(set(codes.tolist())) == 8  # an asymmetric photo: every transform hashes differently


def test_stored_variants_start_with_the_phash():
    hashes = image_hashes(Image.open(REPO / "samples" / "images" / "coffee.png").convert("RGB"))
    variants = np.frombuffer(hashes["phash_dihedral"], "<u8")
    assert variants[0] == to_uint64([hashes["phash"]])[0] and len(variants) == 8


def _reference(rgb: Image.Image) -> dict:
    """The stored hashes as imagehash computes them on the work image, and the 8 pHashes as a plain loop
    over the transformed DCT block."""
    grey = work_image(rgb)
    low = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS)),
                                              axis=0), axis=1)[:8, :8]
    signs = (-1.0) ** np.arange(8)
    variants = []
    for transpose, flip_rows, flip_cols in DIHEDRAL:
        block = low.T if transpose else low
        block = block * signs[:, None] if flip_rows else block
        block = block * signs[None, :] if flip_cols else block
        variants.append(_bits_to_uint(block > np.median(block)))
    signed = {name: _bits_to_uint(fn(grey).hash) for name, fn in (
        ("phash", imagehash.phash), ("dhash", lambda g: imagehash.dhash(g, 8)),
        ("whash", lambda g: imagehash.whash(g, 8, 64)), ("ahash", lambda g: imagehash.average_hash(g, 8)))}
    assert signed["phash"] == variants[0]
    return {**{k: v - (1 << 64) if v >= 1 << 63 else v for k, v in signed.items()},
            "phash_dihedral": np.array(variants, dtype="<u8").tobytes()}


def _flat_images():
    """Images whose wHash block sums tie at their median (flat areas, steps, text, borders)."""
    yield Image.new("RGB", (120, 90), (40, 40, 40))
    yield Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (100, 1))).convert("RGB")
    text = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(text).text((20, 80), "simsearch " * 3, fill="black")
    yield text
    yield Image.fromarray(np.pad(np.full((50, 50), 128, np.uint8), 30, constant_values=200)).convert("RGB")


def test_hashes_are_imagehash_bit_for_bit_on_samples_and_flat_images():
    images = [Image.open(p).convert("RGB") for p in sorted((REPO / "samples" / "images").iterdir())]
    images += [img.rotate(7, expand=True) for img in images] + list(_flat_images())
    for img in images:
        assert image_hashes(img) == _reference(img)


def test_hashes_are_imagehash_bit_for_bit_on_dups():
    """The stored hash values may not change (issue 15): every image of the development set."""
    files = sorted(p for p in (shared("dups") / "images").rglob("*") if p.is_file())
    for path in files:
        rgb = decode_file(str(path)).image
        assert image_hashes(rgb) == _reference(rgb), path
