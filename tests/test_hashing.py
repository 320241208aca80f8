"""pHash of the 8 rotations and flips, derived from one DCT, agrees with imagehash
computing pHash on each transformed image."""

import imagehash
import numpy as np
import pytest
from PIL import Image

from simsearch.hashing import (
    DIHEDRAL,
    _bits_to_uint,
    dihedral_phashes,
    image_hashes,
    to_uint64,
    work_image,
)

from .conftest import REPO


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
