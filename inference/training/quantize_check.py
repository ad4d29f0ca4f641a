"""The int8 accuracy rule, measured: the served int8 network against fp32 on the same inputs.

Both run as the worker serves them (norms folded, one view): fp32 in float32; int8 with its float
tail under bf16 autocast where the CPU has bf16 in hardware. Detection runs once for the photo
check, so both precisions read the very same crops.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from inference.api.manifest import ModelManifest
from inference.training.metrics import classification_report
from inference.training.predict import predict_probs

log = logging.getLogger(__name__)

FER_POINTS, PHOTO_POINTS, MIN_IOU = 0.3, 0.5, 0.85
CAM_FACES = 200
TOP_SHARE = 0.2


def top_region_iou(a: np.ndarray, b: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """Per map, the IoU of the two maps' top-``share`` regions (maps (N, H, W))."""
    out = np.empty(len(a), dtype=np.float64)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        mx, my = x >= np.quantile(x, 1 - share), y >= np.quantile(y, 1 - share)
        union = int((mx | my).sum())
        out[i] = (mx & my).sum() / union if union else 1.0
    return out


def every_kth(count: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``count`` sorted items (every class folder is visited)."""
    return np.arange(0, count, max(1, count // n))[:n]


def meets_rule(checks: dict[str, float]) -> bool:
    """The accuracy rule on :func:`measure_rule`'s figures: int8 may be served by default."""
    return (
        abs(checks["fer_val_delta_points"]) <= FER_POINTS
        and abs(checks["photos_delta_points"]) <= PHOTO_POINTS
        and checks["cam_top20_iou"] >= MIN_IOU
    )


def _accuracy(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> float:
    return classification_report(probs, labels, classes).accuracy


def top_region(cam: np.ndarray) -> str:
    """The face region a text reason names first ("" for an empty map)."""
    from inference.serve.explain import region_shares

    shares = region_shares(cam, None)
    return max(shares, key=lambda k: shares[k]) if sum(shares.values()) > 0 else ""


def measure_rule(
    folder: Path, manifest: ModelManifest, val: Path, photos: Path | None, detector: str
) -> dict[str, float]:
    """FER2013 PublicTest and real-photo accuracy of both precisions, their difference in points,
    and how far the Grad-CAM maps, labels and reasons of 200 PublicTest faces agree."""
    from inference.serve.checkpoint import load_model
    from inference.serve.explain import CamClassifier
    from inference.serve.faces import build_detector
    from inference.serve.model import fold_batchnorm
    from inference.serve.precision import serving_network
    from inference.serve.preprocess import faces_to_batch
    from inference.training.data import load_faces
    from inference.training.photos import photo_crops

    classes = tuple(str(c) for c in manifest.classes)
    model, _ = load_model(folder)
    fp32 = fold_batchnorm(model.eval())
    int8, served, tail_bf16 = serving_network(fp32, manifest, folder, "int8", None, torch.device("cpu"))
    if served != "int8":
        raise RuntimeError(f"the int8 trunk could not be served here ({served})")
    checks: dict[str, float] = {"int8_tail_bf16": float(bool(tail_bf16))}

    def both(crops: torch.Tensor | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        a = predict_probs(fp32, crops, manifest, bf16=False, progress="fp32")
        b = predict_probs(int8, crops, manifest, bf16=bool(tail_bf16), progress="int8")
        return a, b

    faces = load_faces(val, manifest.input_size, classes)
    labels = faces.labels.numpy()
    p32, p8 = both(faces.images)
    checks["fer_val_fp32"] = round(_accuracy(p32, labels, classes) * 100, 2)
    checks["fer_val_int8"] = round(_accuracy(p8, labels, classes) * 100, 2)
    checks["fer_val_delta_points"] = round(checks["fer_val_int8"] - checks["fer_val_fp32"], 2)
    checks["fer_val_label_agree"] = round(float((p32.argmax(1) == p8.argmax(1)).mean()), 4)
    log.info("FER2013 PublicTest: fp32 %.2f, int8 %.2f", checks["fer_val_fp32"], checks["fer_val_int8"])

    if photos is not None and photos.is_dir():
        found = photo_crops(photos, classes, build_detector(detector), manifest.input_size)
        q32 = np.full((len(found.paths), len(classes)), 1.0 / len(classes), dtype=np.float32)
        q8 = q32.copy()
        if found.crops:
            q32[found.has_face], q8[found.has_face] = both(found.crops)
        checks["photos_fp32"] = round(_accuracy(q32, found.labels, classes) * 100, 2)
        checks["photos_int8"] = round(_accuracy(q8, found.labels, classes) * 100, 2)
        checks["photos_delta_points"] = round(checks["photos_int8"] - checks["photos_fp32"], 2)
        checks["photos_n"] = float(len(found.paths))

    pick = torch.from_numpy(every_kth(len(faces.images), CAM_FACES))
    batch = faces_to_batch(faces.images[pick], manifest.input_size, manifest.mean, manifest.std)
    with (
        CamClassifier(fp32, manifest.target_layer, bf16=False) as cam32,
        CamClassifier(int8, manifest.target_layer, bf16=bool(tail_bf16)) as cam8,
    ):
        a, b = cam32(batch), cam8(batch)
    checks["cam_top20_iou"] = round(float(top_region_iou(a.maps, b.maps).mean()), 4)
    checks["cam_label_agree"] = round(float((a.probs.argmax(1) == b.probs.argmax(1)).mean()), 4)
    reasons = [top_region(m32) == top_region(m8) for m32, m8 in zip(a.maps, b.maps, strict=True)]
    checks["cam_reason_agree"] = round(float(np.mean(reasons)), 4)
    checks["cam_faces"] = float(len(pick))
    return checks
