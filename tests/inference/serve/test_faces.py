from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.serve.faces import Face, Landmarks, crop_face


def _tilted_bar_image(angle_deg: float) -> tuple[Image.Image, Face]:
    """A dark 'eye line' tilted by ``angle_deg`` with landmarks on its ends."""
    im = Image.new("RGB", (400, 400), (200, 200, 200))
    d = ImageDraw.Draw(im)
    c = (200.0, 200.0)
    dx, dy = 60 * math.cos(math.radians(angle_deg)), 60 * math.sin(math.radians(angle_deg))
    left, right = (c[0] - dx, c[1] - dy), (c[0] + dx, c[1] + dy)
    d.line([left, right], fill=(0, 0, 0), width=8)
    marks = Landmarks(left, right, c, (170.0, 260.0), (230.0, 260.0))
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
    f = Face((10.0, 20.0, 30.0, 60.0), 0.9, Landmarks(*((10.0, 20.0),) * 5))
    assert f.area == 800.0
    g = f.scaled(0.5)
    assert g.box == (5.0, 10.0, 15.0, 30.0)
    assert g.landmarks is not None and g.landmarks[0] == (5.0, 10.0)


def _portrait() -> Image.Image:
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


def test_batched_cascade_matches_facenet_pytorch() -> None:
    """Our MTCNN cascade finds the same face as facenet-pytorch's own detect_face."""
    import torch
    from facenet_pytorch.models.mtcnn import MTCNN

    from inference.serve.detectors.mtcnn import MtcnnDetector

    image = _portrait()
    with torch.inference_mode():
        boxes, probs, points = MTCNN(keep_all=True, device="cpu").detect(image, landmarks=True)
    ours = MtcnnDetector().detect(image)
    assert len(ours) == 1 and boxes is not None and len(boxes) == 1
    # Area-averaging crops in PIL instead of torch moves borderline boxes a little
    # (benchmarks/face_detectors.py: same recall within a point, same framing).
    a, b = np.array(ours[0].box), np.asarray(boxes[0], dtype=float)
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    assert inter / union > 0.8
    assert ours[0].landmarks is not None
    side = float(b[2] - b[0])
    assert np.abs(np.array(ours[0].landmarks) - points[0]).max() < 0.08 * side
    assert abs(ours[0].score - float(probs[0])) < 0.01


def test_cascade_on_face_free_and_flat_images() -> None:
    from inference.serve.detectors.mtcnn import MtcnnDetector

    det = MtcnnDetector()
    assert det.detect(Image.new("RGB", (320, 240), (128, 128, 128))) == []
    assert det.detect(Image.new("RGB", (30, 30), (0, 0, 0))) == []  # smaller than one P-Net window
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    assert det.detect(noise) == []


def test_framing_is_unchanged_for_ordinary_faces() -> None:
    """The crop of a face well inside the photo is exactly FER's framing (the tiny-image clamp
    must never touch it: a 1-pixel change moved a reading by 13 points once)."""
    rng = np.random.default_rng(7)
    im = Image.fromarray(rng.integers(0, 255, (600, 512, 3), dtype=np.uint8))
    for box in ((167.15, 106.83, 347.87, 339.75), (40.2, 61.7, 201.9, 250.4)):
        face = Face(box, 0.99)
        crop = crop_face(im, face, size=48)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) / face.framing.box_fraction
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + face.framing.center_shift * side
        half = side * 0.75
        patch = im.convert("L").crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        inner = (patch.width - side) / 2
        ref = patch.resize(
            (48, 48),
            Image.Resampling.BILINEAR,
            box=(inner, inner, inner + side, inner + side),
            reducing_gap=2.0,
        )
        assert np.array_equal(crop.pixels, np.asarray(ref))


def _hopper_face() -> tuple[Image.Image, Face]:
    from inference.serve.detectors.mtcnn import MtcnnDetector

    image = _portrait()
    return image, max(MtcnnDetector().detect(image), key=lambda f: f.area)


def _close_up(window: float) -> Image.Image:
    """A phone held close: a square window ``window`` x the face box around its centre, at 720 px."""
    image, face = _hopper_face()
    x0, y0, x1, y1 = face.box
    half = window * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return image.crop(box).resize((720, 720), Image.Resampling.BILINEAR)


def _over_centre(faces: list[Face], side: int) -> bool:
    c = side / 2
    return any(f.box[0] <= c <= f.box[2] and f.box[1] <= c <= f.box[3] for f in faces)


def test_a_close_up_whose_face_overflows_the_frame_is_found() -> None:
    from inference.serve.detectors.mtcnn import MtcnnDetector

    served, one_pass = MtcnnDetector(), MtcnnDetector(close_ups=False, fine_pass=False)
    for window in (1.2, 0.85, 0.7):  # below 1 the face box is larger than the photo
        close = _close_up(window)
        assert _over_centre(served.detect(close), 720), window
    # the second look is what finds it: the first pass alone loses the 0.7 close-up
    assert not _over_centre(one_pass.detect(_close_up(0.7)), 720)


Photo = tuple[Image.Image, list[tuple[int, int]]]


def _group_photo(share: float, size: tuple[int, int] = (1280, 960)) -> Photo:
    """Four copies of a real face, each face box ``share`` of the photo's short side, on a plain wall."""
    image, face = _hopper_face()
    x0, y0, x1, y1 = face.box
    pad = 0.6 * max(x1 - x0, y1 - y0)
    head = image.crop((round(x0 - pad), round(y0 - pad), round(x1 + pad), round(y1 + pad)))
    scale = share * min(size) / max(x1 - x0, y1 - y0)
    head = head.resize((round(head.width * scale), round(head.height * scale)), Image.Resampling.BOX)
    canvas = Image.new("RGB", size, (150, 140, 130))
    centres = []
    for i in range(4):
        left = size[0] * (i + 1) // 5 - head.width // 2
        top = size[1] // 2 - head.height // 2 + (i % 2) * size[1] // 6
        canvas.paste(head, (left, top))
        centres.append((left + head.width // 2, top + head.height // 2))
    return canvas, centres


def test_small_faces_of_a_group_photo_are_found() -> None:
    from inference.serve.detectors.mtcnn import MtcnnDetector

    # face boxes 4.75 % of the short side (heads about a tenth): 23 px at the 640 px working size
    photo, centres = _group_photo(0.0475)
    faces = MtcnnDetector().detect(photo)
    hits = {
        i
        for i, (cx, cy) in enumerate(centres)
        for f in faces
        if f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3]
    }
    assert hits == {0, 1, 2, 3} and len(faces) == 4
    # the coarse first pass alone (faces from a tenth of the short side) misses them
    assert len(MtcnnDetector(close_ups=False, fine_pass=False).detect(photo)) < 2


def test_the_skipped_levels_change_no_selfie_and_the_second_look_covers_them() -> None:
    """The first pass drops the two finest pyramid levels: a selfie keeps exactly its boxes, and a
    photo with smaller faces is looked at again at those very levels (plus the 40 px one)."""
    from inference.serve import mtcnn
    from inference.serve.detectors.mtcnn import MtcnnDetector

    portrait = _portrait()
    full, skipped = (
        MtcnnDetector(skip_levels=0).detect(portrait),
        MtcnnDetector(skip_levels=2).detect(portrait),
    )
    assert len(full) == len(skipped) == 1 and full[0].box == skipped[0].box

    # levels (face sizes in px) each view looks at, in a 640x480 photo
    def sizes(view: mtcnn._View) -> list[float]:
        found, size = [], view.least
        while min(view.image.size) * 12 / size >= 12 and (view.most is None or size < view.most * (1 - 1e-6)):
            found.append(round(size, 3))
            size /= 0.709
        return found

    photo = Image.new("RGB", (640, 480))
    floor = 0.10 * 480
    before = sizes(mtcnn._View(photo, floor)) + [
        s for v in mtcnn._fine_views(photo, floor, 40, 0.709) for s in sizes(v)
    ]
    first = floor / 0.709**2
    after = sizes(mtcnn._View(photo, first)) + [
        s for v in mtcnn._fine_views(photo, first, 40, 0.709) for s in sizes(v)
    ]
    assert sorted(after) == sorted(before) and len(sizes(mtcnn._View(photo, first))) == len(before) - 3


def test_photos_without_a_face_still_give_no_face_after_the_second_look() -> None:
    from matplotlib import cbook

    from inference.serve.detectors.mtcnn import MtcnnDetector

    det = MtcnnDetector()
    folder = Path(cbook.get_sample_data("logo2.png", asfileobj=False)).parent
    for name in ("logo2.png", "Minduka_Present_Blue_Pack.png"):
        image = Image.open(folder / name).convert("RGB")
        assert det.detect(image) == [], name
        assert det.detect(image.resize((image.width * 3, image.height * 3))) == [], name


def test_a_crop_that_leaves_the_photo_repeats_its_edge_instead_of_black() -> None:
    """A close-up's face box is larger than the photo: the crop must not frame it in black."""
    im = Image.new("RGB", (300, 300), (90, 90, 90))
    ImageDraw.Draw(im).rectangle((0, 0, 299, 20), fill=(220, 220, 220))  # a bright top edge
    crop = crop_face(im, Face((-80.0, -60.0, 380.0, 400.0), 0.99), size=48)
    assert crop.pixels.min() >= 85  # no black anywhere
    assert crop.pixels[0].mean() > 150  # above the photo: its bright top row, repeated
    inside = crop_face(im, Face((100.0, 100.0, 200.0, 200.0), 0.99), size=48)
    assert (inside.pixels == 90).all()  # a box well inside is cut exactly as before


def test_each_detector_module_is_found_by_its_name_and_a_new_one_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inference.serve.detectors as package
    from inference.serve.faces import build_detector, detector_names

    assert detector_names() == ["full", "haar", "mtcnn"]
    for name in ("full", "haar"):
        assert build_detector(name).name == name
    with pytest.raises(ValueError, match="unknown face detector 'nope'"):
        build_detector("nope")
    # a new detector is one new module in the package: settings and --detector see it at once
    (tmp_path / "corner.py").write_text(
        "from inference.serve.faces import Face\n\n"
        "class Detector:\n"
        "    name = 'corner'\n\n"
        "    def detect(self, image):\n"
        "        return [Face((0.0, 0.0, 10.0, 10.0), 1.0)]\n"
    )
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    assert "corner" in detector_names()
    from inference.serve.settings import EngineSettings

    assert EngineSettings(face_detector="corner").face_detector == "corner"
    assert build_detector("corner").detect(Image.new("RGB", (20, 20)))[0].box == (0.0, 0.0, 10.0, 10.0)
    sys.modules.pop("inference.serve.detectors.corner", None)
