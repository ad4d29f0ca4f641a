"""Whole photos as served, for evaluation: decode → detect (the largest face) → FER crop →
probabilities, with counts of what was found, and the calm-face baselines read per group."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from inference.api.errors import MoodringError
from inference.api.intake import IntakeLimits, decode_image
from inference.api.manifest import ModelManifest
from inference.serve.faces import Face, FaceDetector, crop_face
from inference.training.data import DatasetError, list_imagefolder
from inference.training.predict import Adapt, Tta, predict_probs, progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DetectStats:
    images: int
    with_face: int
    unreadable: int


@dataclass(frozen=True, slots=True)
class BaselineStats:
    """What ``--baseline-by`` did: groups (people), how many had a calm photo, photos left out."""

    column: str
    alpha: float
    groups: int
    with_baseline: int
    left_out: int


@dataclass(frozen=True, slots=True)
class PhotoProbs:
    """The full pipeline's probabilities for every photo of an ImageFolder tree."""

    paths: tuple[str, ...]  # relative to the root, POSIX
    labels: np.ndarray
    probs: np.ndarray  # uniform where no face was found
    has_face: np.ndarray
    stats: DetectStats


@dataclass(frozen=True, slots=True)
class PhotoCrops:
    """The served crop of every photo of an ImageFolder tree in which a face was found."""

    paths: tuple[str, ...]  # every photo, relative to the root, POSIX
    labels: np.ndarray  # every photo's
    has_face: np.ndarray
    crops: list[np.ndarray]  # one per photo with a face, in order
    stats: DetectStats


def read_groups(root: Path, column: str) -> dict[str, str]:
    """``path -> group`` from ``root/labels.csv`` (columns ``path``, ``label`` and ``column``)."""
    import csv

    table = root / "labels.csv"
    if not table.is_file():
        raise DatasetError(f"--baseline-by needs {table}")
    with table.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "label", column} <= set(rows[0]):
        raise DatasetError(f"{table} needs the columns path, label and {column}")
    return {r["path"]: r[column] for r in rows}


def apply_calm_baselines(
    photos: PhotoProbs, groups: Mapping[str, str], classes: Sequence[str], alpha: float, column: str = ""
) -> tuple[np.ndarray, np.ndarray, BaselineStats]:
    """Read each group's photos relative to its calm face, as the worker does for a user.

    A group's calm face is its first ``neutral`` photo in path order with a face found; that
    photo is left out of the score (``keep`` is False for it). Every other photo of the group
    is re-weighted with :func:`inference.serve.personal.personal_weights`; photos of groups
    without a calm photo, or not in the table, are scored as they are.
    """
    from inference.serve.personal import personal_weights, reweight

    neutral = classes.index("neutral") if "neutral" in classes else -1
    calm: dict[str, int] = {}
    for i in sorted(range(len(photos.paths)), key=lambda i: photos.paths[i]):
        group = groups.get(photos.paths[i])
        if group is not None and group not in calm and photos.labels[i] == neutral and photos.has_face[i]:
            calm[group] = i
    probs = photos.probs.copy()
    keep = np.ones(len(photos.paths), dtype=bool)
    for i, path in enumerate(photos.paths):
        group = groups.get(path)
        if group is None or group not in calm:
            continue
        if calm[group] == i:
            keep[i] = False
            continue
        base = dict(zip(classes, photos.probs[calm[group]].tolist(), strict=True))
        w = personal_weights(classes, baseline=base, alpha=alpha)
        if w is not None and photos.has_face[i]:
            probs[i] = reweight(photos.probs[i], w)
    stats = BaselineStats(column, alpha, len(set(groups.values())), len(calm), int((~keep).sum()))
    return probs, keep, stats


def largest_faces(
    paths: Sequence[Path], detector: FaceDetector
) -> Iterator[tuple[Image.Image | None, Face | None]]:
    """Per photo, as served: (decoded photo, its largest face); (photo, None) where no face is
    found, (None, None) where the file can't be read."""
    limits = IntakeLimits()
    for path in progress_bar(paths, "detecting faces", unit="photo"):
        try:
            image = decode_image(path.read_bytes(), limits).image
        except MoodringError:
            yield None, None
            continue
        faces = detector.detect(image)
        yield image, max(faces, key=lambda f: f.area) if faces else None


def photo_crops(root: Path, classes: tuple[str, ...], detector: FaceDetector, size: int) -> PhotoCrops:
    """Decode → detect (largest face) → FER crop, as served, for every photo under ``root``."""
    items = list_imagefolder(root, classes)
    crops: list[np.ndarray] = []
    has_face = np.zeros(len(items), dtype=bool)
    unreadable = 0
    for i, (image, face) in enumerate(largest_faces([path for path, _ in items], detector)):
        if image is None:
            unreadable += 1
        elif face is not None:
            crops.append(crop_face(image, face, size).pixels)
            has_face[i] = True
    labels = np.array([label for _, label in items])
    stats = DetectStats(len(items), int(has_face.sum()), unreadable)
    paths = tuple(p.relative_to(root).as_posix() for p, _ in items)
    return PhotoCrops(paths, labels, has_face, crops, stats)


def photo_probs(
    model: nn.Module,
    manifest: ModelManifest,
    root: Path,
    detector: FaceDetector,
    tta: Tta = "none",
    bf16: bool = True,
    adapt: Adapt | None = None,
) -> PhotoProbs:
    """Decode → detect (largest face) → FER crop → probabilities, for every photo under ``root``."""
    classes = tuple(str(c) for c in manifest.classes)
    found = photo_crops(root, classes, detector, manifest.input_size)
    probs = np.full((len(found.paths), len(classes)), 1.0 / len(classes), dtype=np.float32)
    if found.crops:
        probs[found.has_face] = predict_probs(
            model, found.crops, manifest, tta=tta, bf16=bf16, progress="classifying", adapt=adapt
        )
    return PhotoProbs(found.paths, found.labels, probs, found.has_face, found.stats)
