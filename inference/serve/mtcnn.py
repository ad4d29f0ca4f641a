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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def _crops(halvings: list[Image.Image], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Square candidate boxes → (N, 3, size, size), normalised like MTCNN expects.

    Boxes are clipped to the image exactly as facenet-pytorch's ``pad`` does (1-based
    inclusive corners, truncated to integers); each is area-averaged (PIL's BOX filter,
    in C on uint8) where the original called ``interpolate(mode="area")`` per box, from
    the photo's smallest halving that keeps 2 pixels per output pixel (:func:`_halving`).
    """
    w, h = halvings[0].size
    b = boxes[:, :4].trunc()
    x0 = (b[:, 0].clamp(min=1) - 1).tolist()
    y0 = (b[:, 1].clamp(min=1) - 1).tolist()
    x1 = b[:, 2].clamp(max=w).tolist()
    y1 = b[:, 3].clamp(max=h).tolist()
    out = np.empty((len(x0), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(zip(x0, y0, x1, y1, strict=True)):
        if box[2] > box[0] and box[3] > box[1]:
            j = _halving(halvings, (box[2] - box[0]) / size)
            src = tuple(v / 2**j for v in box)
            out[i] = np.asarray(halvings[j].resize((size, size), Image.Resampling.BOX, box=src))
        else:  # degenerate after clipping: an empty crop the nets will reject
            out[i] = 0
    return _tensor(out)


def _tensor(pixels: Image.Image | np.ndarray) -> torch.Tensor:
    """(N,) H, W, 3 uint8 → normalised float (N, 3, H, W) with channels-last strides."""
    arr = pixels if isinstance(pixels, np.ndarray) else np.array(pixels)  # writable copy
    x = torch.from_numpy(arr if arr.ndim == 4 else arr[None]).permute(0, 3, 1, 2).float()
    return (x - 127.5) * 0.0078125


Found = tuple[np.ndarray, np.ndarray]


def detect_many(
    images: Sequence[Image.Image],
    pnet: nn.Module,
    rnet: nn.Module,
    onet: nn.Module,
    min_face_size: int = 40,
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
    device: torch.device | None = None,
    min_face_fraction: float = 0.0,
    second_look: SecondLook | None = None,
    skip_levels: int = 0,
) -> list[Found]:
    """MTCNN over several images: P-Net per image (each has its own pyramid), then ONE
    R-Net and ONE O-Net pass over the candidates of all of them (their crops are all 24 / 48 px).

    The networks must already be on ``device`` (default: the CPU). Each image's boxes and
    landmarks are what detecting it alone gives (the nets see each crop on its own).
    ``min_face_fraction`` raises an image's smallest face to that share of its short side
    (never below ``min_face_size``): the pyramid then skips its largest, costliest levels.
    ``skip_levels`` drops that many more of the first pass's finest levels (its scales stay
    those of the full series: the levels it keeps see exactly what they saw before).
    ``second_look`` looks again at the photos where that first pass found no face, or only
    small ones: the skipped fine levels, and the photo padded so a face as large as the frame or
    larger fits (:class:`SecondLook`). A photo whose first pass found a selfie-sized face pays
    nothing more and keeps exactly the first pass's boxes.
    """
    device = device or torch.device("cpu")
    smallest = [max(min_face_size, min_face_fraction * min(im.size)) / factor**skip_levels for im in images]
    views = [_View(im, least) for im, least in zip(images, smallest, strict=True)]
    out = _cascade(views, pnet, rnet, onet, thresholds, factor, device)
    if second_look is None:
        return out
    again: list[tuple[int, _View]] = []
    for i, (im, least) in enumerate(zip(images, smallest, strict=True)):
        boxes = out[i][0]
        sure = boxes[boxes[:, 4] >= second_look.score] if len(boxes) else boxes
        short = min(im.size)
        if len(sure) and float((sure[:, 2:4] - sure[:, 0:2]).max()) >= second_look.small * short:
            continue  # a face a selfie would have: done, the first pass's boxes as they are
        if second_look.fine and least > min_face_size:  # the fine levels the first pass skipped
            again.extend((i, view) for view in _fine_views(im, least, min_face_size, factor))
        if second_look.close_ups:  # a face as large as the frame or larger (a phone held close)
            again.append((i, _View(im, short)))  # one level: the short side is P-Net's window
            again.append((i, _padded(im, second_look.pad)))
    if not again:
        return out
    more = _cascade([v for _, v in again], pnet, rnet, onet, thresholds, factor, device)
    for (i, view), (boxes, points) in zip(again, more, strict=True):
        if len(boxes):
            out[i] = _merge(out[i], view.unpad(boxes, points))
    return out


@dataclass(frozen=True)
class SecondLook:
    """When and how :func:`detect_many` looks at a photo again.

    ``score``: a first-pass face counts only at this final score (the detector's own threshold);
    ``small``: a face under this share of the short side doesn't end the search (a group photo
    may hold smaller ones; a selfie's face is far larger: taiwanese_dev's smallest is 58 %);
    ``pad``: the photo is padded to this many times its long side, so a face up to that size (a
    phone held close: the face fills or overflows the frame) fits the coarsest levels.
    """

    score: float = 0.92
    small: float = 0.25
    pad: float = 2.0
    fine: bool = True
    close_ups: bool = True


@dataclass
class _View:
    """One image for the cascade: faces from ``least`` px up to ``most`` px (None: the whole
    frame), and where its pixels sit in the photo (``offset``: a padded view's border)."""

    image: Image.Image
    least: float
    most: float | None = None
    offset: tuple[int, int] = (0, 0)

    def unpad(self, boxes: np.ndarray, points: np.ndarray) -> Found:
        dx, dy = self.offset
        if dx or dy:
            boxes = boxes.copy()
            boxes[:, [0, 2]] -= dx
            boxes[:, [1, 3]] -= dy
            points = points - np.array([dx, dy], dtype=points.dtype)
        return boxes, points


def _fine_views(image: Image.Image, least: float, min_face_size: float, factor: float) -> list[_View]:
    """The levels under the first pass's smallest face ``least``: those of its own series (the
    scales a pass from a finer floor would have had), then one series down to ``min_face_size``."""
    aligned = least
    while aligned * factor >= min_face_size:
        aligned *= factor
    views = [_View(image, aligned, most=least)] if aligned < least else []
    if aligned > min_face_size:
        views.append(_View(image, min_face_size, most=aligned))
    return views


def _padded(image: Image.Image, pad: float) -> _View:
    """The photo centred on a square canvas ``pad`` x its long side, filled with its mean colour;
    only faces at least 3/4 of its short side are looked for (the first pass saw the rest)."""
    side = round(pad * max(image.size))
    fill = tuple(int(v) for v in np.asarray(image.reduce(8) if min(image.size) >= 16 else image).mean((0, 1)))
    canvas = Image.new("RGB", (side, side), fill)  # type: ignore[arg-type]
    offset = ((side - image.width) // 2, (side - image.height) // 2)
    canvas.paste(image, offset)
    return _View(canvas, 0.75 * min(image.size), offset=offset)


def _merge(a: Found, b: Found) -> Found:
    """Two looks' faces at one photo, overlapping boxes kept once (the cascade's final NMS)."""
    boxes, points = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    if len(a[0]) == 0:
        return boxes, points
    pick = np.asarray(_final_nms(torch.from_numpy(boxes)), dtype=np.int64).reshape(-1)
    return boxes[pick], points[pick]


def _cascade(
    views: Sequence[_View],
    pnet: nn.Module,
    rnet: nn.Module,
    onet: nn.Module,
    thresholds: tuple[float, float, float],
    factor: float,
    device: torch.device,
) -> list[Found]:
    """The three stages over ``views``: P-Net per view, R-Net and O-Net once for all of them."""
    none = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    halvings = [[v.image] for v in views]
    boxes: list[torch.Tensor | None] = [
        _pnet_stage(hs, pnet, v.least, thresholds[0], factor, device, v.most)
        for hs, v in zip(halvings, views, strict=True)
    ]

    # Stage 2: R-Net refines every candidate of every image at 24 px, in one batch.
    live = [i for i, b in enumerate(boxes) if b is not None]
    if live:
        crops = torch.cat([_crops(halvings[i], boxes[i], 24) for i in live]).to(device)  # type: ignore[arg-type]
        mv_all, prob_all = rnet(crops)
        for i, (mv, prob) in zip(live, _split(live, boxes, mv_all, prob_all), strict=True):
            b = boxes[i]
            assert b is not None
            keep = prob[:, 1] > thresholds[1]
            b = torch.cat([b[keep, :4], prob[keep, 1:2]], dim=1)
            mv = mv[keep]
            if len(b) == 0:
                boxes[i] = None
                continue
            pick = nms(b[:, :4], b[:, 4], 0.7)
            boxes[i] = rerec(bbreg(b[pick], mv[pick]))

    # Stage 3: O-Net at 48 px gives the final score, box and five landmarks, in one batch.
    out: list[Found] = [none] * len(views)
    live = [i for i, b in enumerate(boxes) if b is not None]
    if not live:
        return out
    crops = torch.cat([_crops(halvings[i], boxes[i], 48) for i in live]).to(device)  # type: ignore[arg-type]
    mv_all, points_all, prob_all = onet(crops)
    for i, (mv, points, prob) in zip(live, _split(live, boxes, mv_all, points_all, prob_all), strict=True):
        b = boxes[i]
        assert b is not None
        keep = prob[:, 1] > thresholds[2]
        b = torch.cat([b[keep, :4], prob[keep, 1:2]], dim=1)
        points, mv = points[keep], mv[keep]
        if len(b) == 0:
            continue
        wi = (b[:, 2] - b[:, 0] + 1).unsqueeze(1)
        hi = (b[:, 3] - b[:, 1] + 1).unsqueeze(1)
        px = wi * points[:, :5] + b[:, 0:1] - 1
        py = hi * points[:, 5:10] + b[:, 1:2] - 1
        points = torch.stack([px, py], dim=2)
        b = bbreg(b, mv)
        pick = _final_nms(b)
        out[i] = b[pick].cpu().numpy(), points[pick].cpu().numpy()
    return out


def _final_nms(boxes: torch.Tensor) -> Any:
    """MTCNN's last NMS (overlap over the smaller box, 0.7): the indices of the boxes kept."""
    zeros = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
    return batched_nms_numpy(boxes[:, :4], boxes[:, 4], zeros, 0.7, "Min")


def _split(
    live: list[int], boxes: Sequence[torch.Tensor | None], *outputs: torch.Tensor
) -> list[tuple[torch.Tensor, ...]]:
    """Cut a batched network output back into one part per image (in ``live`` order)."""
    sizes = [len(boxes[i]) for i in live]  # type: ignore[arg-type]
    parts = [torch.split(o, sizes) for o in outputs]
    return list(zip(*parts, strict=True))


def _halving(halvings: list[Image.Image], shrink: float) -> int:
    """Which halving of the photo to area-average from when shrinking it ``shrink`` times: the
    smallest one (``halvings``: the photo, then exact 2x2 box reductions, made on demand) that
    still leaves at least 2 source pixels per output pixel. Returns its index j (scale 1/2**j).

    Every pyramid level resized from the full 640 px photo cost as much as the first (2.8 ms
    for the 7 levels), and a candidate box's crop as much as the box's area; from the halvings
    the pyramid costs 0.7 ms, with the same faces found (docs/performance.md). Resizing each
    level from the one before was cheaper still, but its stacked blur found 2 points fewer
    FER faces.
    """
    j = 0
    while shrink >= 4 * 2**j and min(halvings[j].size) >= 2:
        j += 1
        if j == len(halvings):
            halvings.append(halvings[-1].reduce(2))
    return j


def _pnet_stage(
    halvings: list[Image.Image],
    pnet: nn.Module,
    min_face_size: float,
    threshold: float,
    factor: float,
    device: torch.device,
    max_face_size: float | None = None,
) -> torch.Tensor | None:
    """Stage 1: P-Net over the image's scale pyramid; square candidate boxes, or None.

    Faces from ``min_face_size`` px up to (not including) ``max_face_size``, or, with None, up to
    about the image's short side (the last level whose short side still holds P-Net's 12 px).
    ``halvings`` starts as ``[image]``; the stage adds the reductions it makes for later stages.
    """
    w, h = halvings[0].size
    scale = 12.0 / min_face_size
    minl = min(h, w) * scale
    found, picks, offset = [], [], 0
    # (a level at exactly ``max_face_size`` belongs to the view that starts there: the tolerance
    # keeps float rounding of the same scale reached two ways from counting it twice)
    while minl >= 12 and (max_face_size is None or scale * max_face_size > 12.0 * (1 + 1e-6)):
        size = (int(w * scale + 1), int(h * scale + 1))
        j = _halving(halvings, w / size[0])
        level = _tensor(halvings[j].resize(size, Image.Resampling.BOX))
        reg, probs = pnet(level.to(device))
        boxes_s, _ = generateBoundingBox(reg, probs[:, 1], scale, threshold)
        found.append(boxes_s)
        picks.append(nms(boxes_s[:, :4], boxes_s[:, 4], 0.5) + offset)
        offset += boxes_s.shape[0]
        scale *= factor
        minl *= factor
    if not found:  # image smaller than one 12 px P-Net window at the first scale
        return None
    boxes = torch.cat(found)[torch.cat(picks)]
    if len(boxes) == 0:
        return None
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
    square: torch.Tensor = rerec(boxes)
    return square
