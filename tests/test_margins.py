"""Uniform margins and filled corners: the picture's size that the keeper of a duplicate group counts."""

import io

import pytest
from PIL import Image, ImageDraw, ImageOps

from simsearch.hashing import work_image
from simsearch.imageio import decode
from simsearch.margins import picture_size

from .conftest import REPO


def _picture(img: Image.Image, fmt: str = "JPEG") -> tuple[int, int]:
    """The picture size the indexer records for ``img`` saved as ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 70} if fmt == "JPEG" else {}))
    decoded = decode(buf.getvalue())
    return picture_size(decoded.width, decoded.height, work_image(decoded.image))


@pytest.fixture(scope="module", params=["chelsea.png", "coffee.png", "rocket.jpg", "camera.png"])
def sample(request) -> Image.Image:
    return Image.open(REPO / "samples" / "images" / request.param).convert("RGB")


def test_a_photo_is_all_picture(sample):
    assert _picture(sample) == sample.size


@pytest.mark.parametrize("fill", [(0, 0, 0), (255, 255, 255), (200, 30, 30)])
def test_a_border_is_left_out(sample, fill):
    w, h = sample.size
    framed = ImageOps.expand(sample, border=(w // 10, h // 14), fill=fill)
    pw, ph = _picture(framed)
    assert abs(pw - w) <= 0.03 * w and abs(ph - h) <= 0.03 * h, (framed.size, (pw, ph))


def test_a_letterbox_is_left_out(sample):
    w, h = sample.size
    pw, ph = _picture(ImageOps.expand(sample, border=(0, h // 6, 0, h // 6), fill=(0, 0, 0)))
    assert pw == w and abs(ph - h) <= 0.03 * h


@pytest.mark.parametrize("angle", [5, -8])
def test_the_filled_corners_of_a_turned_picture_are_left_out(sample, angle):
    turned = sample.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    pw, ph = _picture(turned)
    area = sample.width * sample.height
    assert 0.8 * area <= pw * ph <= 1.02 * area, (sample.size, turned.size, (pw, ph))


def test_a_flat_edge_or_an_object_on_a_plain_ground_is_picture(sample):
    w, h = sample.size
    sky = ImageOps.expand(sample, border=(0, h // 5, 0, 0), fill=(255, 255, 255))  # one flat edge only
    assert _picture(sky) == sky.size
    ground = Image.new("RGB", (400, 300), (0, 0, 0))
    ImageDraw.Draw(ground).ellipse((60, 40, 340, 260), fill=(210, 160, 110))  # an object, no straight edge
    assert _picture(ground, "PNG") == ground.size
    disc = Image.new("RGB", (300, 300), (0, 0, 0))
    ImageDraw.Draw(disc).ellipse((0, 0, 299, 299), fill=(180, 60, 40))  # touches every edge, but round
    assert _picture(disc, "PNG") == disc.size
