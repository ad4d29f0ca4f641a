"""Face detection and FER2013-style cropping.

Two offline detectors, both shipped inside PyPI wheels (nothing is downloaded):
MTCNN from facenet-pytorch (boxes, scores and five landmarks) and OpenCV's Haar
cascade (boxes only). ``benchmarks/face_detectors.py`` measured them; the
numbers and the choice are in ``inference/MODEL_CARD.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from PIL import Image

from inference.api.settings import WORKING_SIDE

log = logging.getLogger(__name__)

Point = tuple[float, float]


class Landmarks(NamedTuple):
    """Five facial points by name (left/right as seen in the image); a detector fills them in."""

    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point


@dataclass(frozen=True, slots=True)
class Framing:
    """How a detector's box maps to a FER2013-framed crop.

    ``box_fraction``: the box side over the crop side; ``center_shift``: crop centre = box
    centre + shift x crop side (negative: higher). Each detector states its own.
    """

    box_fraction: float
    center_shift: float


# FER2013 framing, measured by running MTCNN on padded FER val faces
# (benchmarks/face_detectors.py): FER crops are tight, the detector's box is
# about 1.05x the 48 px crop side and its centre sits ~1 % of the side lower.
FER_FRAMING = Framing(box_fraction=1.05, center_shift=-0.01)


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face in image pixel coordinates, with the framing its detector's boxes need."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    landmarks: Landmarks | None = None
    framing: Framing = FER_FRAMING

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor``."""
        box = tuple(v * factor for v in self.box)
        marks = (
            None
            if self.landmarks is None
            else Landmarks(*((x * factor, y * factor) for x, y in self.landmarks))
        )
        return Face((box[0], box[1], box[2], box[3]), self.score, marks, self.framing)


class FaceDetector(Protocol):
    """Finds faces in an RGB image."""

    name: str

    def detect(self, image: Image.Image) -> list[Face]:
        """Return every face found, in any order."""
        ...


# MTCNN's smallest face in its first pass, as a share of the working image's short side (never
# under its 40 px): a selfie's face is far larger (taiwanese_dev: the smallest of 628 is 58 %),
# and skipping the pyramid's largest levels saves about a sixth of detection. At 640x480 the floor
# is 48 px. A photo where that pass finds no face, or only small ones, gets a second look (the
# skipped fine levels down to 40 px, and the photo padded for faces larger than the frame:
# inference/serve/mtcnn.py SecondLook), so group photos and close-ups are found again while a
# selfie pays nothing. Both are measured by benchmarks/face_detectors.py (docs/performance.md).
MIN_FACE_FRACTION = 0.10


class MtcnnDetector:
    """facenet-pytorch's MTCNN (weights ship in its wheel), on the CPU or (``to``) a GPU.

    The networks come from facenet-pytorch; the cascade runs through
    :func:`inference.serve.mtcnn.detect_many`, which area-averages the pyramid and candidate
    crops with PIL instead of one torch ``interpolate`` call per box, and refines the
    candidates of several photos in one R-Net and one O-Net pass.
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: int = 40,
        threshold: float = 0.92,
        max_side: int = WORKING_SIDE,
        min_face_fraction: float = MIN_FACE_FRACTION,
        fine_pass: bool = True,
        close_ups: bool = True,
    ) -> None:
        """``fine_pass`` / ``close_ups``: the second look's two parts (both on when served; off
        only to measure what each one finds)."""
        import torch
        from facenet_pytorch.models.mtcnn import MTCNN

        from inference.serve.mtcnn import SecondLook

        mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=min_face_size).eval()
        # Channels-last weights make every conv output (and the max-pools after them)
        # channels-last: the networks run ~2x faster on CPU, same boxes to 1e-5 px.
        self._nets = tuple(
            net.to(memory_format=torch.channels_last) for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet)
        )
        self._min_face_size = min_face_size
        self._min_face_fraction = min_face_fraction
        self._threshold = threshold
        self._max_side = max_side
        self._second_look = SecondLook(threshold, fine=fine_pass, close_ups=close_ups)
        self._device = torch.device("cpu")

    def to(self, device: Any) -> MtcnnDetector:
        """Run the three networks on ``device`` (a ``torch.device``)."""
        self._nets = tuple(net.to(device) for net in self._nets)
        self._device = device
        return self

    def detect(self, image: Image.Image) -> list[Face]:
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """The faces of each image; the candidates of all of them go through R-Net and O-Net at once."""
        import torch

        from inference.serve.mtcnn import detect_many

        scales = [min(1.0, self._max_side / max(image.size)) for image in images]
        smalls = [
            (
                image
                if scale == 1.0
                else image.resize(
                    (round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR
                )
            ).convert("RGB")
            for image, scale in zip(images, scales, strict=True)
        ]
        pnet, rnet, onet = self._nets
        with torch.inference_mode():
            found = detect_many(
                smalls,
                pnet,
                rnet,
                onet,
                self._min_face_size,
                device=self._device,
                min_face_fraction=self._min_face_fraction,
                second_look=self._second_look,
            )
        return [
            self._faces(boxes, points, scale) for (boxes, points), scale in zip(found, scales, strict=True)
        ]

    def _faces(self, boxes: Any, points: Any, scale: float) -> list[Face]:
        faces = []
        for box, pts in zip(boxes, points, strict=True):
            if float(box[4]) < self._threshold:
                continue
            face = Face(
                (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                float(box[4]),
                Landmarks(*((float(x), float(y)) for x, y in pts)),  # MTCNN's order is Landmarks' order
            )
            faces.append(face.scaled(1.0 / scale))
        return faces


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (ships in opencv-python-headless < 5)."""

    name = "haar"

    def __init__(self, min_face_size: int = 40, max_side: int = WORKING_SIDE) -> None:
        import cv2

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")
        self._min = min_face_size
        self._max_side = max_side

    def detect(self, image: Image.Image) -> list[Face]:
        import cv2

        scale = min(1.0, self._max_side / max(image.size))
        grey = np.asarray(image.convert("L"))
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(self._min, self._min), outputRejectLevels=True
        )
        faces = []
        for (x, y, w, h), weight in zip(rects, weights, strict=True):
            score = 1.0 / (1.0 + math.exp(-float(weight)))
            faces.append(Face((float(x), float(y), float(x + w), float(y + h)), score).scaled(1.0 / scale))
        return faces


class FullFrameDetector:
    """Treat the whole (already cropped) image as one face: for FER-style inputs and tests."""

    name = "full"

    def detect(self, image: Image.Image) -> list[Face]:
        w, h = image.size
        side = min(w, h)
        box_side = side * FER_FRAMING.box_fraction
        cx, cy = w / 2, h / 2 - FER_FRAMING.center_shift * side
        return [Face((cx - box_side / 2, cy - box_side / 2, cx + box_side / 2, cy + box_side / 2), 1.0)]


# name -> constructor; MOODRING_FACE_DETECTOR and the CLIs' --detector choose from these.
DETECTORS: dict[str, Callable[[], FaceDetector]] = {
    "mtcnn": MtcnnDetector,
    "haar": HaarDetector,
    "full": FullFrameDetector,
}


def build_detector(name: str, device: Any = None) -> FaceDetector:
    """Construct a detector by name: ``mtcnn`` (default), ``haar`` or ``full`` (pre-cropped faces).

    ``device`` (a ``torch.device``) moves a detector that has networks (MTCNN) there.
    """
    try:
        detector = DETECTORS[name]()
    except KeyError:
        raise ValueError(f"unknown face detector {name!r}; use one of {sorted(DETECTORS)}") from None
    move = getattr(detector, "to", None)
    if device is not None and move is not None:
        move(device)
    return detector


@dataclass(frozen=True, slots=True)
class Crop:
    """A FER-framed grey face crop and the square it came from (for mapping maps back)."""

    pixels: np.ndarray  # (size, size) uint8
    center: tuple[float, float]
    side: float
    angle_deg: float  # roll applied to level the eyes (counter-clockwise, image coords)


def crop_face(image: Image.Image, face: Face, size: int = 48) -> Crop:
    """Cut a grey, square, eye-levelled crop framed like FER2013 (by the face's detector framing)."""
    x0, y0, x1, y1 = face.box
    box_side = max(x1 - x0, y1 - y0)
    side = box_side / face.framing.box_fraction
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + face.framing.center_shift * side
    angle = 0.0
    if face.landmarks is not None:
        (lx, ly), (rx, ry) = face.landmarks.left_eye, face.landmarks.right_eye
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        if abs(angle) > 45:  # implausible landmark geometry: don't spin the face
            angle = 0.0
    grey = image.convert("L")
    side = max(side, 2.0)  # a degenerate box (a 1-pixel image, say) still gives a crop
    # Cut a generous window first so rotating it is cheap and corners stay filled.
    half = side * 0.75
    window = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    patch = _cut(grey, window)
    if angle:
        fill = int(np.median(np.asarray(patch)))
        patch = patch.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    pw, ph = patch.size
    inner = max(0.0, (pw - side) / 2)
    span = min(side, pw - inner, ph - inner)  # the box stays inside the patch (tiny images)
    patch = patch.resize(
        (size, size),
        Image.Resampling.BILINEAR,
        box=(inner, inner, inner + span, inner + span),
        reducing_gap=2.0,
    )
    return Crop(np.asarray(patch, dtype=np.uint8), (cx, cy), side, angle)


def _cut(grey: Image.Image, window: tuple[int, int, int, int]) -> Image.Image:
    """``grey.crop(window)``, but where the window leaves the photo (a close-up's face overflows
    it) the photo's edge pixels are repeated outward instead of black."""
    x0, y0, x1, y1 = window
    w, h = grey.size
    inside = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
    if inside == window or inside[2] <= inside[0] or inside[3] <= inside[1]:
        return grey.crop(window)
    pads = ((inside[1] - y0, y1 - inside[3]), (inside[0] - x0, x1 - inside[2]))
    return Image.fromarray(np.pad(np.asarray(grey.crop(inside)), pads, mode="edge"))
