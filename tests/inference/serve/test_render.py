from __future__ import annotations

import io

import numpy as np
from PIL import Image

from inference.api.emotions import EmotionRegistry
from inference.serve.faces import Crop, Face
from inference.serve.render import Overlay, caption, draw_overlays, render_jpeg


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
    empty = _face_region(render_jpeg(photo, [_overlay(np.zeros((48, 48), np.float32))]))
    hot_map = np.zeros((48, 48), np.float32)
    hot_map[24:, :] = 1.0  # lower half of the face
    hot = _face_region(render_jpeg(photo, [_overlay(hot_map)]))
    assert np.abs(empty - 128).max() <= 2  # grey photo untouched (JPEG rounding aside)
    top, bottom = hot[:20], hot[-20:]
    assert np.abs(top - 128).mean() < 5
    assert np.abs(bottom - 128).mean() > 40


def _at(box: tuple[float, float, float, float], cam: np.ndarray) -> Overlay:
    x0, y0, x1, y1 = box
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    # a crop square wider than the box, and rotated: its corners reach past the box
    crop = Crop(pixels=np.zeros((48, 48), np.uint8), center=centre, side=(x1 - x0) * 1.3, angle_deg=12.0)
    return Overlay(Face(box=box, score=0.99), crop, cam, EmotionRegistry(["happy"])["happy"], 0.93)


def test_labels_stay_inside_the_image_and_colour_inside_the_face_box() -> None:
    photo = Image.new("RGB", (200, 200), (128, 128, 128))
    box = (140.0, 4.0, 198.0, 70.0)  # top-right corner: no room above, little to the right
    # the drawing itself, before JPEG's ringing blurs its edges
    img = np.asarray(draw_overlays(photo, [_at(box, np.ones((48, 48), np.float32))]), dtype=np.int16)
    dark = img.max(axis=2) < 70  # the caption's black backing
    assert dark.any() and np.nonzero(dark)[1].max() < 199, "the caption runs off the right edge"
    changed = np.abs(img - 128).max(axis=2) > 12
    changed[2:72, 138:200] = False  # the box and its outline
    ys, xs = np.nonzero(dark)
    changed[ys.min() - 1 : ys.max() + 2, xs.min() - 1 : xs.max() + 2] = False  # the caption itself
    assert not changed.any(), "heat colour spilled outside the face box"


def test_render_is_a_jpeg_and_leaves_the_callers_image_alone() -> None:
    photo = Image.new("RGB", (200, 200), (128, 128, 128))
    before = photo.tobytes()
    out = render_jpeg(photo, [_overlay(np.ones((48, 48), np.float32))])
    assert out.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "JPEG" and im.size == (200, 200)
    assert photo.tobytes() == before
