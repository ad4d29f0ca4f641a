from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference.api.emotions import EmotionRegistry
from inference.serve.faces import Crop, Face
from inference.serve.render import Overlay, caption, render_png


def _overlay(cam: np.ndarray) -> Overlay:
    face = Face(box=(40.0, 40.0, 120.0, 120.0), score=0.99)
    crop = Crop(pixels=np.zeros((48, 48), np.uint8), center=(80.0, 80.0), side=80.0, angle_deg=0.0)
    return Overlay(face, crop, cam, EmotionRegistry(["neutral"])["neutral"], 0.82)


def _face_region(png: bytes) -> np.ndarray:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    return img[50:110, 50:110]  # inside the box, clear of its outline and the label


def test_caption_says_when_the_map_is_empty() -> None:
    assert caption(_overlay(np.zeros((48, 48), np.float32))) == "neutral 82% (no hotspot)"
    hot = np.zeros((48, 48), np.float32)
    hot[30:40, 10:38] = 1.0
    assert caption(_overlay(hot)) == "neutral 82%"


def test_heat_is_drawn_only_where_the_map_has_evidence() -> None:
    photo = Image.new("RGB", (200, 200), (128, 128, 128))
    empty = _face_region(render_png(photo, [_overlay(np.zeros((48, 48), np.float32))]))
    hot_map = np.zeros((48, 48), np.float32)
    hot_map[24:, :] = 1.0  # lower half of the face
    hot = _face_region(render_png(photo, [_overlay(hot_map)]))
    assert np.abs(empty - 128).max() <= 2  # grey photo untouched (palette rounding aside)
    top, bottom = hot[:20], hot[-20:]
    assert np.abs(top - 128).mean() < 5
    assert np.abs(bottom - 128).mean() > 40
