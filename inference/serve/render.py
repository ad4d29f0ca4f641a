"""Draw the explanation picture (a JPEG): the photo, face boxes, Grad-CAM over each face, labels."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inference.api.emotions import EmotionInfo
from inference.serve.explain import map_is_empty
from inference.serve.faces import Crop, Face

MAX_SIDE = 768
# JPEG quality and no chroma subsampling (4:4:4): colour edges of the map, the boxes and the
# captions stay sharp. Measured on a 640 px selfie: 1.1 ms and 84 KB, where the 256-colour
# palette PNG it replaces took 4.7 ms and 140 KB and banded visibly on photos
# (docs/performance.md).
JPEG_QUALITY = 90


@dataclass(frozen=True, slots=True)
class Overlay:
    """One face to draw: where it is, its crop geometry, its map and its label."""

    face: Face
    crop: Crop
    cam: np.ndarray  # (size, size) in [0, 1], crop coordinates
    emotion: EmotionInfo
    confidence: float


def caption(ov: Overlay) -> str:
    """The text drawn above a face: label and confidence, and a note when the map is empty.

    An all-zero Grad-CAM map (no positive evidence anywhere in the face, ~2 % of FER2013
    val faces, mostly calm "neutral" ones) draws no colour at all; without the note the
    picture would look as if the heatmap had failed to render.
    """
    text = f"{ov.emotion.name} {ov.confidence:.0%}"
    if map_is_empty(ov.cam):
        text += " (no hotspot)"
    return text


def _jet(values: np.ndarray) -> np.ndarray:
    """Map [0, 1] to RGB uint8 with the classic jet colormap (no matplotlib at serve time)."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def render_jpeg(image: Image.Image, overlays: Sequence[Overlay], max_side: int = MAX_SIDE) -> bytes:
    """Return JPEG bytes of ``image`` with every face's heatmap, box and label drawn on it."""
    buf = io.BytesIO()
    draw_overlays(image, overlays, max_side).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def draw_overlays(image: Image.Image, overlays: Sequence[Overlay], max_side: int = MAX_SIDE) -> Image.Image:
    """A new RGB picture: ``image`` (at most ``max_side``) with each face's heat, box and caption."""
    scale = min(1.0, max_side / max(image.size))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if scale < 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        canvas = rgb.resize(size, Image.Resampling.BILINEAR)
    else:
        canvas = rgb.copy() if rgb is image else rgb  # never draw on the caller's image
    draw_items = []
    for ov in overlays:
        side = max(2, round(ov.crop.side * scale))
        cam = np.clip(ov.cam, 0, 1).astype(np.float32)
        if ov.crop.angle_deg:  # turn the small map, not the big overlay (1.3 ms at 240 px)
            turned = Image.fromarray(cam, "F").rotate(-ov.crop.angle_deg, Image.Resampling.BILINEAR)
            cam = np.asarray(turned)  # the corners it leaves are 0: no heat, fully transparent
        heat = Image.fromarray(_jet(cam)).resize((side, side), Image.Resampling.BILINEAR)
        alpha = Image.fromarray((cam**0.7 * 150).astype(np.uint8)).resize(
            (side, side), Image.Resampling.BILINEAR
        )
        heat.putalpha(alpha)
        cx, cy = ov.crop.center
        x, y = round(cx * scale - side / 2), round(cy * scale - side / 2)
        # Blend only where the heat square, the face's box and the canvas overlap: colour never
        # spills outside the box users see (the crop square can be larger, and rotated).
        bx0, by0, bx1, by1 = (round(v * scale) for v in ov.face.box)
        left, top = max(x, bx0, 0), max(y, by0, 0)
        right = min(x + heat.width, bx1, canvas.width)
        bottom = min(y + heat.height, by1, canvas.height)
        if right > left and bottom > top:
            part = heat.crop((left - x, top - y, right - x, bottom - y))
            canvas.paste(part, (left, top), part)  # alpha-blended onto the opaque photo
        draw_items.append(ov)
    draw = ImageDraw.Draw(canvas, "RGBA")  # RGBA fills blend onto the RGB canvas
    font_size = max(12, round(max(canvas.size) / 32))
    font = ImageFont.load_default(size=font_size)
    width = max(2, round(max(canvas.size) / 300))
    for ov in draw_items:
        x0, y0, x1, y1 = (v * scale for v in ov.face.box)
        c = ov.emotion.colour
        draw.rectangle((x0, y0, x1, y1), outline=(c >> 16, (c >> 8) & 0xFF, c & 0xFF, 255), width=width)
        text = caption(ov)
        # Above the box when there is room, else just inside its top; never past the right edge.
        t_left, t_top, t_right, t_bottom = draw.textbbox((0, 0), text, font=font)
        tx = min(max(3.0, x0), canvas.width - (t_right - t_left) - 7.0)
        ty = y0 - (t_bottom - t_top) - 2 * width - 3
        if ty < 2:
            ty = y0 + width + 2
        tx, ty = max(3.0, tx) - t_left, ty - t_top
        bbox = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle((bbox[0] - 3, bbox[1] - 2, bbox[2] + 3, bbox[3] + 2), fill=(0, 0, 0, 170))
        draw.text((tx, ty), text, fill=(255, 255, 255, 255), font=font)
    return canvas
