"""Hostile uploads made by the test (nothing committed): every one ends in a typed error.

Fuzzed TIFF (multi-page), PNG, GIF, WebP and BMP files, truncated, zero, random and polyglot
files go through the submit path's decoder, the worker's predictor and `moodring analyze`; the
only outcomes allowed are a decoded image or a :class:`MoodringError` (exit 4 from the CLI, one
line, no traceback). Memory bounds for decompression bombs are not covered here (see the note
in docs/performance.md).
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inference.api.client import shrink_for_queue
from inference.api.errors import MoodringError
from inference.api.intake import IntakeLimits, decode_image
from inference.serve.checkpoint import load_model
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.predictor import Predictor
from tests.conftest import face_photo

ROOT = Path(__file__).resolve().parents[3]


def _multipage_tiff() -> bytes:
    frames = [Image.new("RGB", (64, 48), (i * 60, 90, 200 - i * 50)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    photo = Image.open(io.BytesIO(face_photo(size=(64, 48))))
    out = {"tiff": _multipage_tiff()}
    for fmt in ("PNG", "GIF", "WEBP", "BMP"):
        buf = io.BytesIO()
        photo.save(buf, format=fmt)
        out[fmt.lower()] = buf.getvalue()
    return out


def bombs() -> list[tuple[str, bytes]]:
    """Small files declaring huge canvases (under the 100 MP cap), built byte by byte."""
    import struct
    import zlib

    gif = b"GIF89a" + struct.pack("<HHBBB", 9000, 9000, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    gif += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00\x3b"
    bits = (9000 - 1) | ((9000 - 1) << 14) | (1 << 28)  # VP8L: width-1, height-1, alpha
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    webp = b"RIFF" + struct.pack("<I", 12 + len(vp8l)) + b"WEBPVP8L" + struct.pack("<I", len(vp8l)) + vp8l
    bmp = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
    bmp += struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 0, 0, 0, 0)
    text = zlib.compress(b"A" * 20_000_000, 9)
    ztxt = b"bomb\x00\x00" + text
    png = _png_header(64, 64, 8, 2)
    chunk = struct.pack(">I", len(ztxt)) + b"zTXt" + ztxt + struct.pack(">I", zlib.crc32(b"zTXt" + ztxt))
    ztxt_png = png[:33] + chunk + png[33:]
    return [
        ("bomb-gif-screen", gif),
        ("bomb-webp-lossless", webp),
        ("bomb-bmp-header", bmp),
        ("bomb-png16", _png_header(9000, 9000, 16, 0)),
        ("bomb-png-rgba", _png_header(9000, 9000, 8, 6)),
        ("bomb-ztxt", ztxt_png),
    ]


def corpus(per_seed: int = 60) -> list[tuple[str, bytes]]:
    rng = random.Random(18)
    files: list[tuple[str, bytes]] = []
    for name, data in _seeds().items():
        for i in range(per_seed):
            fuzzed = bytearray(data)
            for _ in range(rng.randint(1, 12)):
                pos = rng.randrange(min(len(fuzzed), 400))  # headers and tables, where parsers trip
                fuzzed[pos] = rng.randrange(256)
            files.append((f"{name}-fuzz{i}", bytes(fuzzed)))
        files.append((f"{name}-truncated", data[: len(data) // 3]))
    files += bombs()
    files += [
        ("zero", b""),
        ("nul", b"\x00" * 4096),
        ("random", bytes(rng.randrange(256) for _ in range(4096))),
        ("jpeg-header-only", b"\xff\xd8\xff\xe0" + b"\x00" * 64),
        ("polyglot-jpeg-zip", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"PK\x03\x04" + os.urandom(256)),
    ]
    return files


def test_every_hostile_file_is_decoded_or_refused_with_a_typed_error() -> None:
    limits = IntakeLimits()
    outcomes = {"decoded": 0, "refused": 0}
    for name, data in corpus():
        for path in (decode_image, shrink_for_queue):
            try:
                path(data, limits) if path is decode_image else path(data)  # type: ignore[operator]
            except MoodringError:
                outcomes["refused"] += 1
            except Exception as exc:
                pytest.fail(f"{name} via {path.__name__}: {type(exc).__name__}: {exc}")
            else:
                outcomes["decoded"] += 1
    assert outcomes["refused"] > 50 and outcomes["decoded"] > 0


def test_the_bot_accepts_the_formats_the_worker_does() -> None:
    tiff = _multipage_tiff()
    assert Image.open(io.BytesIO(shrink_for_queue(tiff))).format == "JPEG"


def test_a_raw_worker_batch_keeps_hostile_photos_in_place(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    try:
        files = [data for _, data in corpus(per_seed=8)]
        outs = predictor.analyze_many([*files, face_photo(size=(96, 96))], [False] * (len(files) + 1))
    finally:
        predictor.close()
    assert all(isinstance(o, MoodringError) or o.faces for o in outs)
    assert not isinstance(outs[-1], MoodringError)  # the good photo of the batch is still answered


def test_the_cli_says_one_line_and_exits_4(tmp_path: Path) -> None:
    keep = ("tiff-fuzz", "random", "polyglot", "bomb-")
    bad = [(n, d) for n, d in corpus(per_seed=4) if n.startswith(keep)]
    for name, data in bad:
        path = tmp_path / f"{name}.img"
        path.write_bytes(data)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
        proc = subprocess.run(
            [sys.executable, "-m", "inference.cli", "analyze", str(path), "--no-music"],
            cwd=ROOT,
            env=env
            | {"PYTHONPATH": str(ROOT), "MOODRING_FACE_DETECTOR": "full", "MOODRING_TORCH_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode == 0:
            continue  # some fuzzed files still decode: then the face is read, fine
        # our own output is one line naming the file; libtiff (C) may print diagnostics of its own
        ours = [line for line in proc.stderr.splitlines() if line.startswith(str(path))]
        assert proc.returncode == 4 and len(ours) == 1, (name, proc.stderr)
        assert "Traceback" not in proc.stderr


def _png_header(width: int, height: int, depth: int, colour: int) -> bytes:
    """A PNG that declares a huge canvas in a few bytes (IHDR, an empty IDAT, IEND)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_decompression_bombs_under_the_pixel_cap_are_refused_before_decoding() -> None:
    from inference.api.errors import ImageTooLarge

    limits = IntakeLimits()
    for bomb in (_png_header(9000, 9000, 16, 0), _png_header(9000, 9000, 8, 6), bombs()[0][1]):
        with pytest.raises(ImageTooLarge, match="MB to decode"):  # 16-bit, RGBA, GIF screen
            decode_image(bomb, limits)
        with pytest.raises(ImageTooLarge):
            shrink_for_queue(bomb)
    # an 8-bit grey canvas of the same size fits the budget and comes out at working size
    big = Image.new("L", (6000, 4000), 128)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    decoded = decode_image(buf.getvalue(), limits)
    assert max(decoded.image.size) == limits.max_side and decoded.image.mode == "RGB"
