"""The one predictor used by the CLI, the worker and the tests: bytes in, faces + heatmap out."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.checkpoint import load_model
from inference.errors import MoodringError, NoFaceFound
from inference.explain import CamClassifier, landmarks_in_crop, reason_text, region_shares
from inference.faces import Crop, Face, FaceDetector, build_detector, crop_face
from inference.intake import DecodedImage, IntakeLimits, decode_image
from inference.manifest import ModelManifest
from inference.preprocess import faces_to_batch
from inference.render import Overlay, render_png

log = logging.getLogger(__name__)

DEFAULT_LIMITS = IntakeLimits()


@dataclass(frozen=True, slots=True)
class FaceResult:
    """One face: where it is, what it shows, and why the model thinks so."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None
    probs: dict[str, float]
    emotion: str
    confidence: float
    reason: str
    regions: dict[str, float]


@dataclass(frozen=True, slots=True)
class Analysis:
    """Every face in a photo (largest first), the explanation PNG and per-stage timings."""

    faces: tuple[FaceResult, ...]
    heatmap_png: bytes | None
    image_size: tuple[int, int]
    cam_size: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    decoded: DecodedImage
    faces: list[Face]
    crops: list[Crop]
    timings: dict[str, float]
    want_heatmap: bool


class Predictor:
    """Decode → detect → crop → ResNet50 + Grad-CAM → render, batched across photos.

    Not thread-safe by design: Grad-CAM keeps hooks and per-call state on the model.
    Create one per thread; the worker runs its single instance in a one-thread executor.
    """

    def __init__(
        self,
        model: nn.Module,
        manifest: ModelManifest,
        detector: FaceDetector,
        limits: IntakeLimits = DEFAULT_LIMITS,
        bf16: bool | None = None,
        max_faces: int = 8,
    ) -> None:
        self.manifest = manifest
        self.detector = detector
        self.limits = limits
        self.max_faces = max_faces
        self._cam = CamClassifier(model, manifest.target_layer, bf16=bf16, temperature=manifest.temperature)

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        detector: str = "mtcnn",
        limits: IntakeLimits = DEFAULT_LIMITS,
        bf16: bool | None = None,
    ) -> Predictor:
        """Build a predictor from a model directory (default: the shipped checkpoint)."""
        model, manifest = load_model(model_dir)
        return cls(model, manifest, build_detector(detector), limits, bf16=bf16)

    def close(self) -> None:
        """Release the Grad-CAM hooks."""
        self._cam.close()

    def warm_up(self) -> None:
        """Run one dummy batch so the first real user doesn't pay for lazy init."""
        size = self.manifest.input_size
        self.classify_crops([np.full((size, size), 128, dtype=np.uint8)])

    def classify_crops(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Probabilities (N, 7) and Grad-CAM maps (N, size, size) for grey face crops."""
        m = self.manifest
        batch = faces_to_batch(crops, m.input_size, m.mean, m.std)
        out = self._cam(batch)
        return out.probs, out.maps, out.native_size

    def analyze(self, data: bytes, want_heatmap: bool = True) -> Analysis:
        """Analyse one photo; raise a :class:`MoodringError` subclass when it can't be used."""
        result = self.analyze_many([data], [want_heatmap])[0]
        if isinstance(result, MoodringError):
            raise result
        return result

    def analyze_many(
        self, items: Sequence[bytes], want_heatmap: Sequence[bool] | None = None
    ) -> list[Analysis | MoodringError]:
        """Analyse several photos with ONE batched forward + Grad-CAM pass over all their faces.

        Per-photo failures (bad image, no face, ...) come back in place as error objects.
        """
        flags = list(want_heatmap) if want_heatmap is not None else [True] * len(items)
        pending: list[_Pending | MoodringError] = []
        for data, flag in zip(items, flags, strict=True):
            try:
                pending.append(self._prepare(data, flag))
            except MoodringError as exc:
                pending.append(exc)
        crops = [c.pixels for p in pending if isinstance(p, _Pending) for c in p.crops]
        if not crops:
            return [p if isinstance(p, MoodringError) else NoFaceFound() for p in pending]
        t = time.perf_counter()
        probs, maps, native = self.classify_crops(crops)
        cam_ms = (time.perf_counter() - t) * 1000
        results: list[Analysis | MoodringError] = []
        offset = 0
        for p in pending:
            if isinstance(p, MoodringError):
                results.append(p)
                continue
            n = len(p.crops)
            p.timings["classify_cam"] = cam_ms
            results.append(self._finish(p, probs[offset : offset + n], maps[offset : offset + n], native))
            offset += n
        return results

    def _prepare(self, data: bytes, want_heatmap: bool) -> _Pending:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        decoded = decode_image(data, self.limits)
        timings["decode"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        with torch.inference_mode():
            faces = self.detector.detect(decoded.image)
        faces.sort(key=lambda f: f.area, reverse=True)
        faces = faces[: self.max_faces]
        timings["detect"] = (time.perf_counter() - t) * 1000
        if not faces:
            raise NoFaceFound()
        size = self.manifest.input_size
        crops = [crop_face(decoded.image, f, size) for f in faces]
        return _Pending(decoded, faces, crops, timings, want_heatmap)

    def _finish(self, p: _Pending, probs: np.ndarray, maps: np.ndarray, native: tuple[int, int]) -> Analysis:
        classes = [str(c) for c in self.manifest.classes]
        size = self.manifest.input_size
        results = []
        overlays = []
        for face, crop, prob, cam in zip(p.faces, p.crops, probs, maps, strict=True):
            idx = int(np.argmax(prob))
            label = classes[idx]
            shares = region_shares(cam, landmarks_in_crop(face, crop, size))
            results.append(
                FaceResult(
                    box=face.box,
                    score=face.score,
                    landmarks=face.landmarks,
                    probs={c: float(v) for c, v in zip(classes, prob, strict=True)},
                    emotion=label,
                    confidence=float(prob[idx]),
                    reason=reason_text(label, shares),
                    regions=shares,
                )
            )
            overlays.append(Overlay(face, crop, cam, label, float(prob[idx])))
        png = None
        if p.want_heatmap:
            t = time.perf_counter()
            png = render_png(p.decoded.image, overlays)
            p.timings["render"] = (time.perf_counter() - t) * 1000
        p.timings["total"] = sum(p.timings.values())
        return Analysis(tuple(results), png, p.decoded.image.size, native, p.timings)
