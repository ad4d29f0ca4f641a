"""Readings as the worker makes them, for a whole folder: probabilities and projected features.

Used by ``moodring adapt`` (the projection from FER2013 Training, a fit ``--from`` a folder of
photos), ``moodring evaluate --adapter`` and the adapter's simulation benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.api.manifest import ModelManifest
from inference.serve.faces import FaceDetector
from inference.serve.projection import Projection
from inference.training.photos import DetectStats, photo_crops
from inference.training.predict import Tta, predict_probs

VIEWS = {"none": 1, "flip": 2, "ten": 10}


def predict_with_features(
    model: nn.Module,
    faces: torch.Tensor | Sequence[np.ndarray],
    manifest: ModelManifest,
    projection: Projection | None = None,
    *,
    tta: Tta = "none",
    bf16: bool = True,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and pooled features (N, 2048), or their projection (N, dims) when
    ``projection`` is given; both averaged over the TTA views."""
    grabbed: list[torch.Tensor] = []
    head = model.get_submodule("fc")
    hook = head.register_forward_pre_hook(lambda _m, args: grabbed.append(args[0].detach().float().cpu()))
    try:
        probs = predict_probs(model, faces, manifest, tta=tta, bf16=bf16, progress=progress)
    finally:
        hook.remove()
    views = VIEWS[tta]
    chunks = [torch.stack(grabbed[i : i + views]).mean(0) for i in range(0, len(grabbed), views)]
    feats = torch.cat(chunks).numpy() if chunks else np.zeros((0, int(head.in_features)), np.float32)  # type: ignore[arg-type]
    return probs, (projection(feats) if projection is not None else feats)


@dataclass(frozen=True, slots=True)
class PhotoReadings:
    """The full pipeline's reading of every photo of an ImageFolder tree (largest face)."""

    paths: tuple[str, ...]
    labels: np.ndarray
    has_face: np.ndarray
    probs: np.ndarray  # (N, C), uniform where no face was found
    features: np.ndarray  # (N, dims), zeros where no face was found
    stats: DetectStats


def photo_readings(
    model: nn.Module,
    manifest: ModelManifest,
    root: Path,
    detector: FaceDetector,
    projection: Projection | None,
    *,
    tta: Tta = "none",
    bf16: bool = True,
) -> PhotoReadings:
    """Decode → detect → FER crop → probabilities and projected features, for every photo."""
    classes = tuple(str(c) for c in manifest.classes)
    found = photo_crops(root, classes, detector, manifest.input_size)
    dims = projection.dims if projection is not None else 0
    probs = np.full((len(found.paths), len(classes)), 1.0 / len(classes), dtype=np.float32)
    feats = np.zeros((len(found.paths), dims), dtype=np.float32)
    if found.crops:
        p, f = predict_with_features(
            model, found.crops, manifest, projection, tta=tta, bf16=bf16, progress="classifying"
        )
        probs[found.has_face] = p
        if dims:
            feats[found.has_face] = f
    return PhotoReadings(found.paths, found.labels, found.has_face, probs, feats, found.stats)
