"""Faces and FER2013-style cropping: what a detector returns (:class:`Face`, with its
:class:`Landmarks` and :class:`Framing`), the :class:`FaceDetector` protocol, and the crop.

The detectors themselves are one module each in :mod:`inference.serve.detectors`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from PIL import Image

from inference.api.plugins import DETECTORS, load, module_names

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


def detector_names() -> list[str]:
    """The detectors there are: the modules of :mod:`inference.serve.detectors`."""
    return module_names(DETECTORS)


def build_detector(name: str, device: Any = None) -> FaceDetector:
    """Construct a detector by name: ``mtcnn`` (served), ``haar``, ``full`` (pre-cropped faces).

    ``device`` (a ``torch.device``) moves a detector that has networks (MTCNN) there.
    """
    detector: FaceDetector = load(DETECTORS, name, "face detector").Detector()
    move = getattr(detector, "to", None)
    if device is not None and move is not None:
        move(device)
    return detector
