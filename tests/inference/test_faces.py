from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from inference.faces import Face, crop_face


def _tilted_bar_image(angle_deg: float) -> tuple[Image.Image, Face]:
    """A dark 'eye line' tilted by ``angle_deg`` with landmarks on its ends."""
    im = Image.new("RGB", (400, 400), (200, 200, 200))
    d = ImageDraw.Draw(im)
    c = (200.0, 200.0)
    dx, dy = 60 * math.cos(math.radians(angle_deg)), 60 * math.sin(math.radians(angle_deg))
    left, right = (c[0] - dx, c[1] - dy), (c[0] + dx, c[1] + dy)
    d.line([left, right], fill=(0, 0, 0), width=8)
    marks = (left, right, c, (170.0, 260.0), (230.0, 260.0))
    return im, Face((120.0, 120.0, 280.0, 280.0), 0.99, marks)


def test_crop_is_grey_square_and_levels_the_eyes() -> None:
    im, face = _tilted_bar_image(20.0)
    crop = crop_face(im, face, size=48)
    assert crop.pixels.shape == (48, 48)
    assert crop.pixels.dtype == np.uint8
    assert abs(crop.angle_deg - 20.0) < 0.5
    dark_rows = np.where((crop.pixels < 100).sum(axis=1) > 10)[0]
    # after levelling, the bar occupies only a few rows instead of a diagonal band
    assert 0 < len(dark_rows) <= 6


def test_crop_without_landmarks_is_not_rotated() -> None:
    im, face = _tilted_bar_image(20.0)
    crop = crop_face(im, Face(face.box, face.score, None), size=48)
    assert crop.angle_deg == 0.0


def test_face_scaled_and_area() -> None:
    f = Face((10.0, 20.0, 30.0, 60.0), 0.9, ((10.0, 20.0),) * 5)
    assert f.area == 800.0
    g = f.scaled(0.5)
    assert g.box == (5.0, 10.0, 15.0, 30.0)
    assert g.landmarks is not None and g.landmarks[0] == (5.0, 10.0)
