from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from inference.api.errors import BadImage, ImageTooLarge
from inference.api.intake import IntakeLimits, decode_image
from tests.conftest import face_photo


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A syntactically valid PNG header that claims absurd dimensions (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "HEIF", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    decoded = decode_image(face_photo(fmt=fmt))
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (400, 300)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    if mode == "I;16":
        im = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
        data = _encode(im, "PNG")
    else:
        fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "1" else "PNG")
        data = _encode(Image.open(io.BytesIO(face_photo())).convert(mode), fmt)
    decoded = decode_image(data)
    assert decoded.image.mode == "RGB"
    arr = np.asarray(decoded.image)
    assert arr.std() > 0  # content survived the conversion


def test_sixteen_bit_range_is_rescaled_not_clipped() -> None:
    im = Image.fromarray(np.linspace(0, 65535, 64 * 48).astype(np.uint16).reshape(48, 64))
    arr = np.asarray(decode_image(_encode(im, "PNG")).image.convert("L"))
    assert arr.min() == 0 and arr.max() == 255


def test_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, _, b = decode_image(data).image.getpixel((5, 5))  # type: ignore[misc]
    assert r > 200 and b < 50


def test_exif_orientation_is_applied() -> None:
    im = Image.new("RGB", (200, 100), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode_image(_encode(im, "JPEG", exif=exif.tobytes()))
    assert decoded.image.size == (100, 200)


@pytest.mark.parametrize(("size", "decoded"), [((4000, 3000), (500, 375)), ((1152, 864), (576, 432))])
def test_big_jpegs_decode_reduced_to_at_least_three_quarters_of_the_working_side(
    size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    """The DCT-scaled decode is used as it is when it keeps 3/4 of 640 px: no decode-then-shrink."""
    photo = Image.new("RGB", size, (120, 110, 100))
    out = decode_image(_encode(photo, "JPEG", quality=80), IntakeLimits(max_side=640))
    assert out.image.size == decoded and out.source_size == size
    # other formats (no reduced decode) come out at the working side
    png = decode_image(_encode(photo, "PNG"), IntakeLimits(max_side=640))
    assert max(png.image.size) == 640


def test_huge_jpeg_is_bounded_by_the_working_size() -> None:
    big = Image.new("RGB", (4000, 3000), (120, 110, 100))
    decoded = decode_image(_encode(big, "JPEG", quality=60), IntakeLimits(max_side=1280))
    assert max(decoded.image.size) <= 1280
    assert decoded.source_size == (4000, 3000)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", BadImage),
        (b"hello, this is not a picture at all", BadImage),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, BadImage),
        (_png_declaring(100_000, 100_000), ImageTooLarge),
        (_png_declaring(20_000, 20_000), ImageTooLarge),
        (_png_declaring(0, 10), BadImage),
    ],
    ids=["empty", "text", "broken-png", "bomb", "over-pixel-cap", "zero-width"],
)
def test_hostile_input_raises_typed_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_image(data)


def test_truncated_jpeg_is_a_bad_image() -> None:
    data = face_photo(size=(800, 600))
    with pytest.raises(BadImage):
        decode_image(data[: len(data) // 2])


def test_byte_cap() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(face_photo(), IntakeLimits(max_bytes=1024))


def test_errors_carry_stable_codes() -> None:
    assert BadImage.code == "bad_image"
    assert ImageTooLarge.code == "too_large"
