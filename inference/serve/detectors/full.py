"""The whole (already cropped) image as one face: for FER-style inputs and tests."""

from __future__ import annotations

from PIL import Image

from inference.serve.faces import FER_FRAMING, Face


class FullFrameDetector:
    """Treat the whole (already cropped) image as one face: for FER-style inputs and tests."""

    name = "full"

    def detect(self, image: Image.Image) -> list[Face]:
        w, h = image.size
        side = min(w, h)
        box_side = side * FER_FRAMING.box_fraction
        cx, cy = w / 2, h / 2 - FER_FRAMING.center_shift * side
        return [Face((cx - box_side / 2, cy - box_side / 2, cx + box_side / 2, cy + box_side / 2), 1.0)]


Detector = FullFrameDetector
