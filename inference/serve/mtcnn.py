"""MTCNN's three-stage cascade for one image (one photo: plain NMS, no per-image batching).

facenet-pytorch's ``detect_face`` resizes the image pyramid and every candidate box
(dozens per photo) with ``interpolate(mode="area")``, which on CPU was over half of the
detector's time. This is the same cascade (same networks, thresholds, pyramid scales,
NMS and box regression, reusing facenet-pytorch's helpers) with the pyramid levels and
crops area-averaged by PIL's BOX filter in C on uint8, and channels-last tensors
throughout (see ``benchmarks/face_detectors.py`` for recall and framing against the
original). The pipeline follows
facenet-pytorch 2.6 ``models/utils/detect_face.py`` (MIT licence, (c) 2019 Timothy Esler).
"""

from __future__ import annotations

import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms_numpy,
    bbreg,
    generateBoundingBox,
    rerec,
)
from PIL import Image
from torch import nn
from torchvision.ops import nms


def _crops(image: Image.Image, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Square candidate boxes → (N, 3, size, size), normalised like MTCNN expects.

    Boxes are clipped to the image exactly as facenet-pytorch's ``pad`` does (1-based
    inclusive corners, truncated to integers); each is area-averaged (PIL's BOX filter,
    in C on uint8) where the original called ``interpolate(mode="area")`` per box.
    """
    w, h = image.size
    b = boxes[:, :4].trunc()
    x0 = (b[:, 0].clamp(min=1) - 1).tolist()
    y0 = (b[:, 1].clamp(min=1) - 1).tolist()
    x1 = b[:, 2].clamp(max=w).tolist()
    y1 = b[:, 3].clamp(max=h).tolist()
    out = np.empty((len(x0), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(zip(x0, y0, x1, y1, strict=True)):
        if box[2] > box[0] and box[3] > box[1]:
            out[i] = np.asarray(image.resize((size, size), Image.Resampling.BOX, box=box))
        else:  # degenerate after clipping: an empty crop the nets will reject
            out[i] = 0
    return _tensor(out)


def _tensor(pixels: Image.Image | np.ndarray) -> torch.Tensor:
    """(N,) H, W, 3 uint8 → normalised float (N, 3, H, W) with channels-last strides."""
    arr = pixels if isinstance(pixels, np.ndarray) else np.array(pixels)  # writable copy
    x = torch.from_numpy(arr if arr.ndim == 4 else arr[None]).permute(0, 3, 1, 2).float()
    return (x - 127.5) * 0.0078125


def detect(
    image: Image.Image,
    pnet: nn.Module,
    rnet: nn.Module,
    onet: nn.Module,
    min_face_size: int = 40,
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
) -> tuple[np.ndarray, np.ndarray]:
    """Faces in an RGB image: boxes (N, 5: x0 y0 x1 y1 score) and landmarks (N, 5, 2)."""
    w, h = image.size
    none = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)

    # Stage 1: P-Net over the scale pyramid.
    scale = 12.0 / min_face_size
    minl = min(h, w) * scale
    found, picks, offset = [], [], 0
    while minl >= 12:
        level = _tensor(image.resize((int(w * scale + 1), int(h * scale + 1)), Image.Resampling.BOX))
        reg, probs = pnet(level)
        boxes_s, _ = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        found.append(boxes_s)
        picks.append(nms(boxes_s[:, :4], boxes_s[:, 4], 0.5) + offset)
        offset += boxes_s.shape[0]
        scale *= factor
        minl *= factor
    if not found:  # image smaller than one 12 px P-Net window at the first scale
        return none
    boxes = torch.cat(found)[torch.cat(picks)]
    if len(boxes) == 0:
        return none
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ],
        dim=1,
    )
    boxes = rerec(boxes)

    # Stage 2: R-Net refines every candidate at 24 px.
    mv, prob = rnet(_crops(image, boxes, 24))
    keep = prob[:, 1] > thresholds[1]
    boxes = torch.cat([boxes[keep, :4], prob[keep, 1:2]], dim=1)
    mv = mv[keep]
    if len(boxes) == 0:
        return none
    pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes = rerec(bbreg(boxes[pick], mv[pick]))

    # Stage 3: O-Net at 48 px gives the final score, box and five landmarks.
    mv, points, prob = onet(_crops(image, boxes, 48))
    keep = prob[:, 1] > thresholds[2]
    boxes = torch.cat([boxes[keep, :4], prob[keep, 1:2]], dim=1)
    points, mv = points[keep], mv[keep]
    if len(boxes) == 0:
        return none
    wi = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
    hi = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
    px = wi * points[:, :5] + boxes[:, 0:1] - 1
    py = hi * points[:, 5:10] + boxes[:, 1:2] - 1
    points = torch.stack([px, py], dim=2)
    boxes = bbreg(boxes, mv)
    zeros = torch.zeros(len(boxes), dtype=torch.long)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], zeros, 0.7, "Min")
    return boxes[pick].numpy(), points[pick].numpy()
