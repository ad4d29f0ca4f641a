"""Decode what people actually upload into a bounded RGB image, or fail with a typed error."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from inference.api.errors import BadImage, ImageTooLarge, TooManyPixels
from inference.api.settings import WORKING_SIDE

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "HEIF", "MPO", "BMP", "TIFF"})
_HEIF_READY = False


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """Caps applied before and during decoding."""

    max_bytes: int = 20 * 1024 * 1024
    max_source_pixels: int = 100_000_000  # header-declared size; 50 MP phones fit, bombs don't
    max_side: int = WORKING_SIDE  # long side after decoding
    # Memory the decoder may fill (pixels x bytes per pixel of the file's mode, after a JPEG's
    # reduced decode): small files that declare huge canvases (a 35-byte GIF, a 157 KB 16-bit
    # PNG, a 3 KB lossless WebP: ~81 MP each) are refused before any pixel is allocated. 72 MiB
    # takes a 24 MP HEIC or PNG photo; JPEGs of any size decode reduced.
    max_decode_bytes: int = 72 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB image at working resolution and the size the file declared."""

    image: Image.Image
    source_size: tuple[int, int]
    format: str


def enable_heif() -> None:
    """Register the HEIC/HEIF opener once (phones send HEIC)."""
    global _HEIF_READY
    if _HEIF_READY:
        return
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # pragma: no cover - optional in minimal installs
        log.warning("pillow-heif is not installed; HEIC photos will be refused")
    else:
        register_heif_opener()
    _HEIF_READY = True


# A JPEG may come out of its reduced (DCT-scaled) decode down to this share of the working side
# (640 px: 480) instead of being decoded larger and shrunk: detection and the heatmap then work
# at 480-640 px for big JPEGs (docs/performance.md). Other formats are shrunk to the working side.
DRAFT_FLOOR = 0.75


def decode_image(data: bytes, limits: IntakeLimits | None = None) -> DecodedImage:
    """Decode bytes into an upright RGB image no larger than ``limits.max_side``.

    Raises:
        BadImage: empty, unidentifiable, truncated or unsupported input.
        ImageTooLarge: file bytes or declared pixel count above the caps.
    """
    limits = limits or IntakeLimits()
    if not data:
        raise BadImage("empty upload")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"{len(data)} bytes > {limits.max_bytes}")
    enable_heif()
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a hostile file's parser complaints are not for users
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            fmt = im.format or ""
            if fmt not in ACCEPTED_FORMATS:
                raise BadImage(f"unsupported format {fmt or 'unknown'}")
            width, height = im.size
            if width <= 0 or height <= 0 or width * height > limits.max_source_pixels:
                raise TooManyPixels(f"{width}x{height} declared")
            # Only the first frame is ever decoded (no frame counting: that decodes them all).
            if fmt in ("JPEG", "MPO"):
                # DCT scaling: decode a big JPEG at 1/2, 1/4 or 1/8 size directly, the smallest
                # that keeps DRAFT_FLOOR of the working side; Pillow picks the factor from the
                # aspect-correct target. A 12 MP photo then decodes at 1/8 (500 px) and is used
                # as it is, where 1/4 (1000 px) cost 1.6 ms more to decode and 2.7 ms to shrink.
                f = DRAFT_FLOOR * limits.max_side / max(width, height)
                if f < 1:
                    im.draft("RGB", (max(1, int(width * f)), max(1, int(height * f))))
            cost = im.width * im.height * BYTES_PER_PIXEL.get(im.mode, 4)
            if cost > limits.max_decode_bytes:
                raise TooManyPixels(f"{width}x{height} {im.mode} needs {cost / 2**20:.0f} MB to decode")
            im.load()
            im = _shrink_in_place(im, limits.max_side)  # before any conversion makes copies
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except (BadImage, ImageTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("decompression bomb") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"cannot decode: {exc}") from exc
    except MemoryError as exc:
        raise ImageTooLarge("not enough memory to decode") from exc
    except Exception as exc:  # a decoder bug on hostile input is still just a bad image
        log.info("decoder raised %s on an upload; refused as a bad image", type(exc).__name__)
        raise BadImage(f"cannot decode: {type(exc).__name__}") from exc
    if max(rgb.size) > limits.max_side:
        # BOX (area averaging) antialiases a downscale as well as BILINEAR and costs a third
        # less (1000 -> 640 px: 2.3 vs 3.3 ms): big PNG, HEIC or WebP photos, and JPEGs whose
        # reduced decode would fall under DRAFT_FLOOR, pay it.
        rgb.thumbnail((limits.max_side, limits.max_side), Image.Resampling.BOX, reducing_gap=2.0)
    return DecodedImage(rgb, (width, height), fmt)


# Bytes a decoded pixel takes in each Pillow mode (what the decoder allocates).
BYTES_PER_PIXEL: dict[str, float] = {
    "1": 0.125, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
    "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I;16": 2, "I;16B": 2, "I;16L": 2,
    "I;16N": 2, "I": 4, "F": 4,
}  # fmt: skip
_REDUCIBLE = {"L", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}


def _shrink_in_place(im: Image.Image, max_side: int) -> Image.Image:
    """Cut a big decode down to about twice the working size in its own mode, copy-light.

    Later conversions (palette, alpha, 16-bit) then touch a small image, never a full-size one.
    """
    factor = int(max(im.size) / (2 * max_side))
    if factor < 2:
        return im
    if im.mode in _REDUCIBLE:
        return im.reduce(factor)
    size = (max(1, im.width // factor), max(1, im.height // factor))
    return im.resize(size, Image.Resampling.NEAREST)  # P, 1 and 16-bit: no filter needed at 2x


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB."""
    if im.mode in ("RGB",):
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)  # a small image by now (_shrink_in_place)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")
