"""The one predictor used by the CLI, the worker and the tests: bytes in, faces + heatmap out."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from inference.api.community import encode_features
from inference.api.contract import FaceResult
from inference.api.emotions import EmotionRegistry
from inference.api.errors import MoodringError, NoFaceFound
from inference.api.intake import DecodedImage, IntakeLimits, decode_image
from inference.api.manifest import ModelManifest
from inference.serve.adapter import Adapter
from inference.serve.checkpoint import load_model
from inference.serve.device import DeviceName, precision_name, resolve_device
from inference.serve.explain import CamClassifier, landmarks_in_crop, reason_text, region_shares
from inference.serve.faces import Crop, Face, FaceDetector, build_detector, crop_face
from inference.serve.personal import Personal, personal_weights
from inference.serve.precision import serving_network
from inference.serve.preprocess import faces_to_batch
from inference.serve.projection import Projection, load_projection
from inference.serve.render import Overlay, render_jpeg

log = logging.getLogger(__name__)
DEFAULT_LIMITS = IntakeLimits()
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Analysis:
    """Every face in a photo (largest first), the explanation JPEG and per-stage timings."""

    faces: tuple[FaceResult, ...]
    heatmap_jpeg: bytes | None
    image_size: tuple[int, int]
    cam_size: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    faces_found: int = 0  # before the cut at ``max_faces``


@dataclass(slots=True)
class _Pending:
    decoded: DecodedImage
    faces: list[Face]
    crops: list[Crop]
    timings: dict[str, float]
    want_heatmap: bool
    personal: Personal
    found: int


class Predictor:
    """Decode → detect → crop → ResNet50 + Grad-CAM → render, batched across photos.

    Not thread-safe by design: Grad-CAM keeps hooks and per-call state on the model.
    Create one per thread; the worker runs its single instance in a one-thread executor.

    ``device`` is where the network runs (the CPU by default; :mod:`inference.serve.device`).
    ``prepare_threads`` > 1 decodes, crops and renders a batch's photos on that many threads at
    once (PIL and torch release the GIL), so a GPU isn't left waiting for one core; detection (on
    a GPU) and the one batched classify + Grad-CAM pass stay on the calling thread.
    ``in_place``: serve ``model`` itself (norms folded, weights cast) instead of a copy of it.
    ``projection`` (:mod:`inference.serve.projection`): each face also carries its projected
    features, and a community adapter with a feature head can be applied.
    """

    def __init__(
        self,
        model: nn.Module,
        manifest: ModelManifest,
        detector: FaceDetector,
        limits: IntakeLimits = DEFAULT_LIMITS,
        bf16: bool | None = None,
        max_faces: int = 8,
        emotions: EmotionRegistry | None = None,
        device: torch.device | None = None,
        prepare_threads: int = 1,
        batch_detect: bool | None = None,
        in_place: bool = False,
        projection: Projection | None = None,
        precision: str = "",
    ) -> None:
        self.manifest = manifest
        self.projection = projection
        self.emotions = emotions or EmotionRegistry(manifest.classes)
        self.detector = detector
        self.limits = limits
        self.max_faces = max_faces
        self.device = device or torch.device("cpu")
        # detect a batch's photos together (one R-Net + one O-Net pass) on a GPU, and on a CPU
        # without prepare threads: 8 1 MP selfies on 1 thread 213.6 -> 201.2 ms (docs/performance.md)
        together = self.device.type != "cpu" or prepare_threads <= 1
        self.batch_detect = together if batch_detect is None else batch_detect
        self._cam = CamClassifier(
            model,
            manifest.target_layer,
            bf16=bf16,
            temperature=manifest.temperature,
            device=self.device,
            in_place=in_place,
            features=projection is not None,
        )
        self.precision = precision or precision_name(self._cam.dtype)  # load() names int8
        self._pool = (
            ThreadPoolExecutor(prepare_threads, thread_name_prefix="prepare") if prepare_threads > 1 else None
        )

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        detector: str = "mtcnn",
        limits: IntakeLimits = DEFAULT_LIMITS,
        bf16: bool | None = None,
        device: DeviceName = "cpu",
        prepare_threads: int | None = None,
        precision: str = "auto",
    ) -> Predictor:
        """Build a predictor from a model directory (default: the shipped checkpoint).
        ``prepare_threads`` unset: 1 on the CPU (the cores run the network), every core on a GPU.
        ``precision``: ``int8``, ``bf16``, ``fp32`` or ``auto`` (:mod:`inference.serve.precision`).

        Raises:
            DeviceUnavailable: ``device="cuda"`` where PyTorch sees no GPU.
        """
        where = resolve_device(device)
        threads = prepare_threads or (1 if where.type == "cpu" else os.cpu_count() or 1)
        model, manifest = load_model(model_dir)
        projection = load_projection(model_dir, manifest)
        detect = build_detector(detector, where)
        # the network loaded here is served itself (in_place): no second copy at start-up
        model, served, bf16 = serving_network(model, manifest, model_dir, precision, bf16, where)
        return cls(
            model,
            manifest,
            detect,
            limits,
            bf16=bf16,
            device=where,
            prepare_threads=threads,
            in_place=True,
            projection=projection,
            precision=served,
        )

    @property
    def projection_sha256(self) -> str:
        return self.projection.sha256 if self.projection is not None else ""

    def check_adapter(self, adapter: Adapter) -> None:
        """Raise :class:`inference.serve.adapter.AdapterError` unless ``adapter`` fits this model."""
        adapter.check(self.manifest.classes, self.projection_sha256)

    def close(self) -> None:
        """Release the Grad-CAM hooks and the prepare threads."""
        self._cam.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``fn`` over ``items``, in order: on the prepare threads when there are several."""
        if self._pool is None:
            return [fn(x) for x in items]
        return list(self._pool.map(fn, items))

    def warm_up(self) -> None:
        """Run one dummy batch so the first real user doesn't pay for lazy init."""
        size = self.manifest.input_size
        self.classify_crops([np.full((size, size), 128, dtype=np.uint8)])

    def classify_crops(
        self,
        crops: Sequence[np.ndarray],
        personal: Sequence[Personal | None] | None = None,
        adapter: Adapter | None = None,
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int], np.ndarray, np.ndarray | None]:
        """Probabilities (N, classes), Grad-CAM maps (N, size, size), native map size, raw
        probabilities, projected features (N, dims) or None.

        ``adapter`` (the community adapter) adjusts every crop first; then ``personal[i]``
        re-weights crop i (:mod:`inference.serve.personal`, its calm face read through the adapter
        too). The probabilities and the class each Grad-CAM map explains are those after both; the
        raw array keeps the network's own probabilities.
        """
        m = self.manifest
        batch = faces_to_batch(crops, m.input_size, m.mean, m.std)
        people = list(personal or [None] * len(crops))
        if adapter is not None:  # the calm face in the adapter's terms (only its probabilities are kept)
            people = [
                Personal(p.prior, adapter.apply_dict(p.baseline)) if p is not None and p.baseline else p
                for p in people
            ]
        rows = [
            personal_weights(m.classes, p.prior, p.baseline, m.baseline_alpha) if p else None for p in people
        ]
        weights = None
        if any(r is not None for r in rows):
            ones = np.ones(len(m.classes))
            weights = np.stack([ones if r is None else r for r in rows])
        adjust = None
        if adapter is not None:
            project = self.projection

            def adjust(probs: np.ndarray, pooled: np.ndarray | None) -> np.ndarray:
                feats = project(pooled) if project is not None and pooled is not None else None
                return adapter.apply(probs, feats)

        out = self._cam(batch, weights, adjust)
        projected = None
        if self.projection is not None and out.features is not None:
            projected = self.projection(out.features)
        return out.probs, out.maps, out.native_size, out.raw_probs, projected

    def analyze(
        self,
        data: bytes,
        want_heatmap: bool = True,
        personal: Personal | None = None,
        adapter: Adapter | None = None,
    ) -> Analysis:
        """Analyse one photo; raise a :class:`MoodringError` subclass when it can't be used."""
        result = self.analyze_many([data], [want_heatmap], [personal], adapter=adapter)[0]
        if isinstance(result, MoodringError):
            raise result
        return result

    def analyze_many(
        self,
        items: Sequence[bytes],
        want_heatmap: Sequence[bool] | None = None,
        personal: Sequence[Personal | None] | None = None,
        adapter: Adapter | None = None,
    ) -> list[Analysis | MoodringError]:
        """Analyse several photos with ONE batched forward + Grad-CAM pass over all their faces.

        ``personal[i]`` is what photo i's sender told us (corrections, calm face); it applies to
        that photo's largest face only (the sender's), never to other people in a group photo.
        ``adapter`` (the deployment's community adapter) applies to every face, before that.
        Per-photo failures (bad image, no face, ...) come back in place as error objects.
        """
        flags = list(want_heatmap) if want_heatmap is not None else [True] * len(items)
        people = list(personal) if personal is not None else [None] * len(items)
        pending = self._prepare_all(items, flags, people)
        crops = [c.pixels for p in pending if isinstance(p, _Pending) for c in p.crops]
        if not crops:
            return [p if isinstance(p, MoodringError) else NoFaceFound() for p in pending]
        crop_personal = [
            p.personal if i == 0 else None
            for p in pending
            if isinstance(p, _Pending)
            for i in range(len(p.crops))
        ]
        t = time.perf_counter()
        probs, maps, native, raw, feats = self.classify_crops(crops, crop_personal, adapter)
        cam_ms = (time.perf_counter() - t) * 1000
        parts: list[slice | None] = []
        offset = 0
        for p in pending:
            if isinstance(p, MoodringError):
                parts.append(None)
                continue
            p.timings["classify_cam"] = cam_ms
            parts.append(slice(offset, offset + len(p.crops)))
            offset += len(p.crops)

        def finish(item: tuple[_Pending | MoodringError, slice | None]) -> Analysis | MoodringError:
            p, part = item
            if isinstance(p, MoodringError):
                return p
            assert part is not None  # every prepared photo has its slice of the batch
            return self._finish(
                p, probs[part], maps[part], native, raw[part], None if feats is None else feats[part], adapter
            )

        return self._map(finish, zip(pending, parts, strict=True))

    def _prepare_all(
        self, items: Sequence[bytes], flags: Sequence[bool], people: Sequence[Personal | None]
    ) -> list[_Pending | MoodringError]:
        """Decode every photo, find its faces and crop them; a photo's failure stays in its place.

        With ``batch_detect`` (default without prepare threads) detection runs over all photos at
        once (:meth:`MtcnnDetector.detect_many`: one R-Net and one O-Net pass for the whole batch);
        otherwise each photo is detected on its own, on the prepare threads.
        """
        decoded = self._map(self._decode, items)
        ok = [(i, d) for i, d in enumerate(decoded) if not isinstance(d, MoodringError)]
        images = [image.image for _, (image, _) in ok]
        detect_many = getattr(self.detector, "detect_many", None)
        t = time.perf_counter()
        if detect_many is not None and self.batch_detect:
            with torch.inference_mode():
                found: list[list[Face]] = detect_many(images)
            shared_ms = (time.perf_counter() - t) * 1000  # the batch's detection, like classify_cam
            detect_ms = [shared_ms] * len(images)
        else:
            timed = self._map(self._detect_one, images)
            found = [f for f, _ in timed]
            detect_ms = [ms for _, ms in timed]
        prepared: dict[int, _Pending | MoodringError] = {}
        for (i, (image, timings)), faces, ms in zip(ok, found, detect_ms, strict=True):
            timings["detect"] = ms
            prepared[i] = self._crop(image, faces, timings, flags[i], people[i] or Personal())
        return [d if isinstance(d, MoodringError) else prepared[i] for i, d in enumerate(decoded)]

    def _decode(self, data: bytes) -> tuple[DecodedImage, dict[str, float]] | MoodringError:
        t = time.perf_counter()
        try:
            decoded = decode_image(data, self.limits)
        except MoodringError as exc:
            return exc
        return decoded, {"decode": (time.perf_counter() - t) * 1000}

    def _detect_one(self, image: Image.Image) -> tuple[list[Face], float]:
        t = time.perf_counter()
        with torch.inference_mode():
            faces = self.detector.detect(image)
        return faces, (time.perf_counter() - t) * 1000

    def _crop(
        self,
        decoded: DecodedImage,
        faces: list[Face],
        timings: dict[str, float],
        want_heatmap: bool,
        personal: Personal,
    ) -> _Pending | MoodringError:
        faces = sorted(faces, key=lambda f: f.area, reverse=True)
        if not faces:
            return NoFaceFound()
        found = len(faces)
        faces = faces[: self.max_faces]
        size = self.manifest.input_size
        crops = [crop_face(decoded.image, f, size) for f in faces]
        return _Pending(decoded, faces, crops, timings, want_heatmap, personal, found)

    def _finish(
        self,
        p: _Pending,
        probs: np.ndarray,
        maps: np.ndarray,
        native: tuple[int, int],
        raw: np.ndarray,
        feats: np.ndarray | None,
        adapter: Adapter | None,
    ) -> Analysis:
        classes = self.manifest.classes
        size = self.manifest.input_size
        version = adapter.version if adapter is not None else ""
        results = []
        overlays = []
        for i, (face, crop, prob, cam, own) in enumerate(
            zip(p.faces, p.crops, probs, maps, raw, strict=True)
        ):
            sender = i == 0
            personal = sender and bool(p.personal)
            adjusted = personal or adapter is not None
            idx = int(np.argmax(prob))
            label = classes[idx]
            shares = region_shares(cam, landmarks_in_crop(face, crop, size))
            results.append(
                FaceResult(
                    box=face.box,
                    score=face.score,
                    emotion=label,
                    confidence=float(prob[idx]),
                    probs={c: float(v) for c, v in zip(classes, prob, strict=True)},
                    reason=reason_text(label, shares),
                    regions=shares,
                    prior_applied=personal and bool(p.personal.prior),
                    baseline_applied=personal and bool(p.personal.baseline),
                    raw_probs={c: float(v) for c, v in zip(classes, own, strict=True)}
                    if sender and adjusted
                    else {},
                    adapter=version,
                    # the sender's face only: what a label they give later is learnt from
                    features=encode_features(feats[i]) if sender and feats is not None else "",
                )
            )
            overlays.append(Overlay(face, crop, cam, self.emotions[label], float(prob[idx])))
        jpeg = None
        if p.want_heatmap:
            t = time.perf_counter()
            jpeg = render_jpeg(p.decoded.image, overlays)
            p.timings["render"] = (time.perf_counter() - t) * 1000
        p.timings["total"] = sum(p.timings.values())
        return Analysis(tuple(results), jpeg, p.decoded.image.size, native, p.timings, p.found)
