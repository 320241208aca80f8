"""Robust image decoding shared by the indexer and by queries, so that a query
image is always read exactly the way the indexed images were.

``decode`` returns an RGB image (or a grey one, where asked) with EXIF orientation
applied, alpha composited on white, CMYK/palette/16-bit converted, the first frame
of an animation, and JPEGs decoded DCT-scaled (``draft``) to at least ``DRAFT_SIZE``
pixels a side unless full decoding is asked for.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

DRAFT_SIZE = 256  # JPEGs are decoded at the smallest DCT scale keeping both sides >= this
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own hard limit (2 x MAX_IMAGE_PIXELS)
_TURNED = range(2, 9)  # the EXIF orientations that move pixels (1: as stored)

_heif_registered = False

# Pillow warns of what ``decode`` handles itself (EXIF it cannot parse, palette transparency, its own pixel
# limit): warnings raised in Pillow's modules are ignored. A filter by module, not ``catch_warnings`` around
# each decode: that swaps the process's filter list in and out, which is not thread-safe, and decodes run in
# threads (verification, the server): one thread's exit could leave every warning of the process ignored.
warnings.filterwarnings("ignore", module=r"(PIL|pillow_heif)(\.|$)")


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


@dataclass(frozen=True)
class Decoded:
    """A decoded image and what was learnt reading it."""

    image: Image.Image  # RGB (L where ``grey`` was asked), oriented
    width: int  # of the stored image, before any DCT scaling
    height: int
    format: str
    mode: str  # of the stored image
    pixel_digest: str | None  # sha256 of the decoded pixels and their size (None: not asked for)


def decode(data: bytes, *, full: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, digest: bool = True,
           grey: bool = False) -> Decoded:
    """Decode image bytes. Raises ``ImageError`` with a ``kind`` on failure. ``digest=False`` leaves out the
    pixel digest (a pass over every pixel) where only the pixels are wanted. ``grey``: the image in mode L
    (a colour JPEG decodes its luminance only, which is faster), without a pixel digest."""
    _register_heif()
    if not data:
        raise ImageError("empty", "file is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            message = f"{width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,}"
            # the size is kept with the failure: a run with a higher limit reads the file again
            raise ImageError.hinted(message + " (raise it with {})", "max_pixels", "--max-pixels", "too_large",
                                    size=(width, height))
        fmt, mode = img.format or "unknown", img.mode
        if fmt == "JPEG" and not full:
            img.draft("L" if grey else "RGB", (DRAFT_SIZE, DRAFT_SIZE))
        img.seek(0)
        _load_strict(img)
        img = _oriented(img)
        if grey:
            return Decoded(img if img.mode == "L" else _to_rgb(img).convert("L"), width, height, fmt, mode, None)
        rgb = _to_rgb(img)
        pixel_digest = pixel_digest_of(rgb) if digest else None
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not_an_image", "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", str(exc)) from None
    except MemoryError:
        raise ImageError("too_large", "ran out of memory decoding the image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageError("corrupt", f"cannot decode {fmt_name(data)}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a codec may raise anything (bad AVIF: RuntimeError): one file fails
        raise ImageError("corrupt", f"cannot decode {fmt_name(data)}: {type(exc).__name__}: {exc}") from None
    return Decoded(rgb, width, height, fmt, mode, pixel_digest)


def pixel_digest_of(rgb: Image.Image) -> str:
    """The SHA-256 of decoded pixels and their size: equal for equal pictures in any format."""
    return hashlib.sha256(b"%dx%d:" % rgb.size + rgb.tobytes()).hexdigest()


def from_memory(image) -> Decoded:
    """A PIL image or a numpy array (HxW grey, HxWx3 RGB or HxWx4 RGBA) made the RGB image ``decode`` would
    give (orientation, alpha on white, deep images scaled). A query only: no pixel digest."""
    try:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(_eight_bits(image))
        width, height = image.size
        rgb = _to_rgb(_oriented(image))
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow refuses dtypes and modes with assorted errors
        raise ImageError("not_an_image", f"cannot read the image in memory: {type(exc).__name__}: {exc}") from None
    return Decoded(rgb, width, height, "memory", image.mode, None)


def _eight_bits(array: np.ndarray) -> np.ndarray:
    """An image array as uint8, scaled as ``_deep_to_rgb`` scales deep grey images: floats up to 1 (scikit-image's
    convention) from 0-1, other values above 255 from 0-65535 (16 bits), the rest as 0-255; booleans as 0 or 255."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ImageError("not_an_image", f"an array of shape {array.shape} is not an image: give HxW, HxWx3 or HxWx4")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind not in "uif":
        raise ImageError("not_an_image", f"an array of {array.dtype} is not an image: give real numbers")
    values = array.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0:
        raise ImageError("not_an_image", f"an array of {array.dtype} with values from {values.min()} to "
                         f"{values.max()} is not an image: give values in 0-1 (floats), 0-255 or 0-65535")
    top = 1.0 if array.dtype.kind == "f" and values.max() <= 1.0 else 65535.0 if values.max() > 255 else 255.0
    return np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)


def decode_file(path: str, **kw) -> Decoded:
    """Decode the image at ``path``; unreadable files raise ``ImageError``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ImageError("unreadable", f"cannot read file: {exc.strerror or exc}") from None
    return decode(data, **kw)


_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def fmt_name(data: bytes) -> str:
    """A short name for the format the bytes claim, for error messages."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return f"{name} data"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP data"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        return "AVIF data" if brand in (b"avif", b"avis") else "HEIF data"
    return "image data"


def _load_strict(img: Image.Image) -> None:
    """Load the pixels with truncated files refused, whatever the host application set."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a failure, not a grey image
    try:
        img.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _oriented(img: Image.Image) -> Image.Image:
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) not in _TURNED:
            return img  # as stored: exif_transpose would return a copy (0.3 ms a photo)
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose the image
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _deep_to_rgb(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _deep_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit and float grey images scaled to 8 bits (Pillow would clip them)."""
    arr = np.asarray(img, dtype=np.float64)
    top = 1.0 if img.mode == "F" and arr.max(initial=0) <= 1.0 else 65535.0 if arr.max(initial=0) > 255 else 255.0
    grey = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")

