"""Decode what people actually upload into a bounded RGB image, or fail with a typed error."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from inference.api.errors import BadImage, ImageTooLarge
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
                raise ImageTooLarge(f"{width}x{height} declared")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            if fmt == "JPEG":
                # DCT scaling: decode a 12-50 MP JPEG at 1/2, 1/4 or 1/8 size directly.
                # Ask for the aspect-correct target so Pillow can pick the largest factor.
                f = limits.max_side / max(width, height)
                if f < 1:
                    im.draft("RGB", (max(1, int(width * f)), max(1, int(height * f))))
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except (BadImage, ImageTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge("decompression bomb") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"cannot decode: {exc}") from exc
    except MemoryError as exc:
        raise ImageTooLarge("not enough memory to decode") from exc
    except Exception as exc:  # a decoder bug on hostile input is still just a bad image
        log.info("decoder raised %s on an upload; refused as a bad image", type(exc).__name__)
        raise BadImage(f"cannot decode: {type(exc).__name__}") from exc
    if max(rgb.size) > limits.max_side:
        rgb.thumbnail((limits.max_side, limits.max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(rgb, (width, height), fmt)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB."""
    if im.mode in ("RGB",):
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
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
