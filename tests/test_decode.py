import io

import numpy as np
import pytest
from PIL import Image

from simsearch.errors import ImageError
from simsearch.hashing import hamming, hash_image
from simsearch.imageio import decode, decode_file, from_memory

from .conftest import REPO, shared

CHELSEA = REPO / "samples" / "images" / "chelsea.png"


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def chelsea():
    return Image.open(CHELSEA).convert("RGB")


def test_modes_convert_to_rgb_and_hash_alike(chelsea):
    base = hash_image(decode(_bytes(chelsea, "PNG")).image)
    grey16 = Image.fromarray(np.asarray(chelsea.convert("L"), np.uint16) * 257)
    for data in (_bytes(chelsea.convert("CMYK"), "JPEG", quality=95), _bytes(chelsea.convert("RGBA"), "PNG"),
                 _bytes(grey16, "PNG"), _bytes(chelsea.convert("P"), "PNG")):
        decoded = decode(data)
        assert decoded.image.mode == "RGB"
        assert hamming(hash_image(decoded.image)["phash"], base["phash"]) <= 6


def test_sixteen_bit_is_scaled_not_clipped(chelsea):
    grey16 = Image.fromarray(np.asarray(chelsea.convert("L"), np.uint16) * 257)
    pixels = np.asarray(decode(_bytes(grey16, "PNG")).image)
    assert 40 < pixels.mean() < 220  # clipping would make it almost all white


def test_arrays_of_every_usual_dtype_give_the_uint8_image(chelsea):
    """A query array as scikit-image (floats in 0-1), 16-bit readers and masks give it: the same pixels as uint8,
    where Pillow refused every colour array but uint8."""
    rgb = np.asarray(chelsea)
    want = np.asarray(from_memory(rgb).image).astype(int)
    for array in (rgb / 255.0, rgb.astype(np.float32), rgb.astype(np.uint16) * 257, rgb.astype(np.int64)):
        assert np.abs(np.asarray(from_memory(array).image).astype(int) - want).max() <= 1, array.dtype
    grey = rgb[..., 0]
    assert np.array_equal(np.asarray(from_memory(grey / 255.0).image), np.asarray(from_memory(grey).image))
    assert np.array_equal(np.asarray(from_memory(rgb > 127).image), np.where(rgb > 127, 255, 0).astype(np.uint8))
    for bad, message in ((np.full((4, 4), np.nan), "values in 0-1"), (rgb.astype(np.int16) - 300, "from -300"),
                         (rgb.astype(complex), "real numbers"), (rgb.ravel(), "is not an image: give HxW")):
        with pytest.raises(ImageError, match=message):
            from_memory(bad)


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    assert np.asarray(decode(_bytes(clear, "PNG")).image).min() == 255


def test_exif_orientation_is_applied(chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    decoded = decode(_bytes(chelsea, "JPEG", exif=exif, quality=95), full=True)
    assert decoded.image.size == (chelsea.height, chelsea.width)


def test_animated_gif_uses_first_frame(chelsea):
    first = chelsea.resize((100, 80))
    data = _bytes(first, "GIF", save_all=True, append_images=[Image.new("RGB", (100, 80))], duration=50)
    assert np.asarray(decode(data).image).mean() > 20  # the second frame is black


def test_lossless_reencode_keeps_pixel_digest(chelsea):
    assert decode(_bytes(chelsea, "PNG")).pixel_digest == decode(_bytes(chelsea, "WEBP", lossless=True)).pixel_digest
    assert decode(_bytes(chelsea, "PNG")).pixel_digest != decode(_bytes(chelsea, "JPEG")).pixel_digest


def test_draft_decoding_keeps_hashes_close():
    photo = Image.open(REPO / "samples" / "images" / "rocket.jpg").convert("RGB").resize((1280, 854))
    data = _bytes(photo, "JPEG", quality=90)
    draft, full = hash_image(decode(data).image), hash_image(decode(data, full=True).image)
    assert decode(data).image.size[0] < 1280  # DCT scaling did happen
    for method in draft:
        assert hamming(draft[method], full[method]) <= 4, method


def test_grey_decoding_is_the_colour_decoding_in_grey(chelsea):
    """What verification reads: a colour JPEG's luminance alone (DCT-scaled as in colour), and every
    other mode through the colour path (alpha on white, CMYK, 16 bits), then grey."""
    photo = Image.open(REPO / "samples" / "images" / "rocket.jpg").convert("RGB").resize((1280, 854))
    cases = [_bytes(photo, "JPEG", quality=90), _bytes(chelsea.convert("CMYK"), "JPEG", quality=95),
             _bytes(chelsea.convert("RGBA"), "PNG"), _bytes(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), "PNG"),
             _bytes(Image.fromarray(np.asarray(chelsea.convert("L"), np.uint16) * 257), "PNG")]
    for data in cases:
        grey, colour = decode(data, grey=True), decode(data)
        assert grey.image.mode == "L" and grey.pixel_digest is None
        assert grey.image.size == colour.image.size and (grey.width, grey.height) == (colour.width, colour.height)
        gap = np.abs(np.asarray(grey.image, np.int16) - np.asarray(colour.image.convert("L"), np.int16))
        assert gap.mean() < 0.05 and gap.max() <= 8  # JPEG's own luma against Pillow's, rounded apart


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", "empty"),
        (b"this is a text file, not a picture\n" * 10, "not_an_image"),
        (None, "corrupt"),  # truncated JPEG, made below
    ],
)
def test_bad_bytes_raise_image_error(chelsea, data, kind):
    if data is None:
        data = _bytes(chelsea, "JPEG")[:2000]
    with pytest.raises(ImageError) as err:
        decode(data)
    assert err.value.kind == kind


def test_decompression_bomb_is_refused():
    bomb = _bytes(Image.new("L", (20000, 20000)), "PNG")  # small file, 400 MP
    with pytest.raises(ImageError) as err:
        decode(bomb)
    assert err.value.kind == "too_large"


def test_heic_decodes_through_pillow_heif(chelsea):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    try:
        data = _bytes(chelsea, "HEIF", quality=90)
    except (KeyError, OSError) as exc:
        pytest.skip(f"this pillow-heif build cannot encode HEIF: {exc}")
    decoded = decode(data)
    assert decoded.format == "HEIF" and hamming(hash_image(decoded.image)["phash"], hash_image(chelsea)["phash"]) <= 6


def test_shared_edge_cases_decode_or_fail_cleanly():
    folder = shared("edge_cases")
    outcomes = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in {".md", ".txt"}:
            continue
        try:
            outcomes[path.name] = decode_file(str(path)).format
        except ImageError as exc:
            outcomes[path.name] = exc.kind
    assert outcomes["imagededup__ukbench09268_corrupt.jpg"] in {"corrupt", "not_an_image"}
    assert outcomes["imagededup__ukbench09380_jpeg_bytes.png"] == "JPEG"  # misnamed: read by content
    assert outcomes["chilland__neg_png_bytes.jpg"] == "PNG"
    assert outcomes["imagededup__giphy.gif"] == "GIF"



def test_decoding_in_threads_is_quiet_and_leaves_the_warning_filters_alone():
    """Pillow's warnings on what decode handles itself (EXIF it cannot read, here) stay quiet even where every
    warning is asked for, and decodes running in threads (verification, the server) leave the process's
    warning filters as they were: swapping them in and out around each decode (``catch_warnings``) is not
    thread-safe and could leave every warning of the process ignored."""
    import subprocess
    import sys

    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x0f\x01\x02\x00\x0c\x00\x00\x00\x1a" + bytes(7) + b"ab"
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "JPEG", exif=exif)  # its Make tag runs past the end
    code = ("import sys, warnings\n"
            "from concurrent.futures import ThreadPoolExecutor\n"
            "from simsearch.imageio import decode\n"
            "data, before = sys.stdin.buffer.read(), list(warnings.filters)\n"
            "with ThreadPoolExecutor(8) as pool:\n"
            "    list(pool.map(lambda _: decode(data), range(2000)))\n"
            "assert warnings.filters == before, 'the filters changed'\n"
            "warnings.warn('still shown')\n")
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], input=buf.getvalue(), capture_output=True,
                         timeout=120)
    assert run.returncode == 0 and run.stderr.decode().count("Warning") == 1, run.stderr.decode()
    assert "UserWarning: still shown" in run.stderr.decode()
