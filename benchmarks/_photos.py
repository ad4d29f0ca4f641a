"""Selfie-sized test photos built from the sample portrait that ships with matplotlib."""

from __future__ import annotations

import io

from matplotlib import cbook
from PIL import Image


def portrait() -> Image.Image:
    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


def selfie_jpeg(width: int, height: int, quality: int = 92) -> bytes:
    """The portrait scaled to fill a ``width`` x ``height`` frame (face ~ 40 % of the width), as JPEG."""
    face = portrait()
    scale = max(width / face.width, height / face.height)
    big = face.resize((round(face.width * scale), round(face.height * scale)), Image.Resampling.BICUBIC)
    left, top = (big.width - width) // 2, (big.height - height) // 2
    buf = io.BytesIO()
    big.crop((left, top, left + width, top + height)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
