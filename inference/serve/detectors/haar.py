"""OpenCV's frontal-face Haar cascade (boxes only; it ships in opencv-python-headless < 5)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from inference.api.settings import WORKING_SIDE
from inference.serve.faces import Face


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


Detector = HaarDetector
