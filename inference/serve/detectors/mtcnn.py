"""MTCNN from facenet-pytorch (boxes, scores and five landmarks; its weights ship in its wheel):
the served detector, with a second look for close-ups and small faces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from inference.api.settings import WORKING_SIDE
from inference.serve.faces import Face, Landmarks

# MTCNN's smallest face in its first pass, as a share of the working image's short side (never
# under its 40 px): a selfie's face is far larger (taiwanese_dev: the smallest of 628 is 58 %),
# and skipping the pyramid's largest levels saves about a sixth of detection. At 640x480 the floor
# is 48 px. A photo where that pass finds no face, or only small ones, gets a second look (the
# skipped fine levels down to 40 px, and the photo padded for faces larger than the frame:
# inference/serve/mtcnn.py SecondLook), so group photos and close-ups are found again while a
# selfie pays nothing. Both are measured by benchmarks/face_detectors.py (docs/performance.md).
MIN_FACE_FRACTION = 0.10
# ...and the first pass starts two pyramid levels coarser still (faces from ~20 % of the short
# side; the levels it keeps are the same scales as before, so a selfie's face is found by exactly
# the levels that found it before): the two finest levels were half of P-Net's work and most of
# R-Net's candidates. Photos with no face of 25 % or more get the second look, which covers them.
SKIP_LEVELS = 2


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
        skip_levels: int = SKIP_LEVELS,
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
        self._skip_levels = skip_levels
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
                skip_levels=self._skip_levels,
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


Detector = MtcnnDetector
