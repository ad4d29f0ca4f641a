"""Evaluate a checkpoint on any ImageFolder tree (classes mapped by folder name)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from inference.api.errors import MoodringError
from inference.api.intake import IntakeLimits, decode_image
from inference.api.manifest import ModelManifest
from inference.serve.faces import DETECTORS, Face, FaceDetector, crop_face
from inference.training.data import DatasetError, list_imagefolder, load_faces
from inference.training.metrics import Report, classification_report

log = logging.getLogger(__name__)

Tta = Literal["none", "flip", "ten"]
Adapt = Callable[[np.ndarray, np.ndarray], np.ndarray]
T = TypeVar("T")


def _bar(items: Iterable[T], label: str | None, **kw: Any) -> Iterable[T]:
    """``items`` with a tqdm progress bar on stderr when ``label`` is given and stderr is a
    terminal; as they are otherwise (CI, pipes, ``--json`` runs read by scripts, tests)."""
    if label is None or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    bar: Iterable[T] = tqdm(items, desc=label, file=sys.stderr, leave=False, dynamic_ncols=True, **kw)
    return bar


def _views(x: torch.Tensor, tta: Tta) -> list[torch.Tensor]:
    """Test-time views of a normalised batch: identity, + flip, or 5 shifted crops x flip."""
    if tta == "none":
        return [x]
    if tta == "flip":
        return [x, x.flip(3)]
    size = x.shape[-1]
    pad = max(1, size // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = [(pad, pad), (0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)]
    crops = [padded[..., r : r + size, c : c + size] for r, c in offsets]
    return crops + [c.flip(3) for c in crops]


@torch.inference_mode()
def predict_probs(
    model: nn.Module,
    faces: torch.Tensor | Sequence[np.ndarray],
    manifest: ModelManifest | None = None,
    *,
    size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    tta: Tta = "none",
    batch_size: int = 256,
    bf16: bool = True,
    temperature: float | None = None,
    progress: str | None = None,
    adapt: Adapt | None = None,
) -> np.ndarray:
    """Softmax probabilities (N, classes) for grey uint8 face crops, averaged over TTA views.

    ``adapt`` (a community adapter: (probs, pooled features) -> probs) adjusts each view first.

    Each view's logits are divided by ``temperature`` (default: the manifest's, else 1)
    before the softmax; that never changes a single view's prediction, only its confidence
    (averaged over TTA views it can flip a near-tie).
    ``progress`` names a progress bar drawn on stderr, only when stderr is a terminal.
    """
    from inference.serve.preprocess import faces_to_batch

    size = size or (manifest.input_size if manifest else 48)
    mean = mean or (manifest.mean if manifest else (0.5,))
    std = std or (manifest.std if manifest else (0.25,))
    if temperature is None:
        temperature = manifest.temperature if manifest else 1.0
    model.eval()
    # run where the model lives (the CPU when served); a model without weights runs on the CPU
    dev = next(iter(model.parameters()), torch.empty(0)).device
    out = []
    n = len(faces)
    pooled: list[torch.Tensor] = []
    hook = None
    if adapt is not None:
        head = model.get_submodule("fc")
        hook = head.register_forward_pre_hook(lambda _m, args: pooled.append(args[0].detach().float()))
    try:
        for start in _bar(range(0, n, batch_size), progress, unit_scale=batch_size, unit="face"):
            x = faces_to_batch(faces[start : start + batch_size], size, mean, std).to(dev)
            acc = None
            views = _views(x, tta)
            for view in views:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(view.contiguous(memory_format=torch.channels_last)).float()
                p = torch.softmax(logits / temperature, dim=1)
                if adapt is not None:
                    got = adapt(p.cpu().numpy(), pooled.pop().cpu().numpy())
                    p = torch.from_numpy(got).float().to(p.device)
                acc = p if acc is None else acc + p
            assert acc is not None
            out.append((acc / len(views)).cpu().numpy())
    finally:
        if hook is not None:
            hook.remove()
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


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


def evaluate_dir(
    model: nn.Module,
    manifest: ModelManifest,
    root: Path,
    tta: Tta = "none",
    detector: FaceDetector | None = None,
    bf16: bool = True,
    baseline_by: str | None = None,
    alpha: float | None = None,
    adapt: Adapt | None = None,
) -> tuple[Report, DetectStats | None, BaselineStats | None]:
    """Score ``root`` (ImageFolder). With a detector, run the full photo pipeline first.

    In detect mode a photo without a detected face counts as wrong (its probabilities
    are uniform), so accuracy is end-to-end; the face count is reported alongside.
    ``baseline_by`` (detect mode) reads ``root/labels.csv`` and reads each group's photos
    relative to its calm face (:func:`apply_calm_baselines`).
    """
    classes = tuple(str(c) for c in manifest.classes)
    if detector is None:
        if baseline_by:
            raise DatasetError("--baseline-by needs --detect (it reads whole photos of people)")
        data = load_faces(root, manifest.input_size, classes)
        probs = predict_probs(
            model, data.images, manifest, tta=tta, bf16=bf16, progress="classifying", adapt=adapt
        )
        return classification_report(probs, data.labels.numpy(), classes), None, None
    groups = read_groups(root, baseline_by) if baseline_by else {}  # a bad table fails before any work
    photos = photo_probs(model, manifest, root, detector, tta=tta, bf16=bf16, adapt=adapt)
    if not baseline_by:
        return classification_report(photos.probs, photos.labels, classes), photos.stats, None
    a = manifest.baseline_alpha if alpha is None else alpha
    probs, keep, stats = apply_calm_baselines(photos, groups, classes, a, baseline_by)
    report = classification_report(probs[keep], photos.labels[keep], classes)
    return report, photos.stats, stats


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
    for path in _bar(paths, "detecting faces", unit="photo"):
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


def write_json(
    path: Path,
    report: Report,
    stats: DetectStats | None,
    extra: dict[str, object],
    baseline: BaselineStats | None = None,
) -> None:
    """Write the report with ``accuracy`` and ``macro_f1`` as top-level keys."""
    payload = report.as_dict() | extra
    if baseline is not None:
        payload["groups_with_baseline"] = baseline.with_baseline
        payload["baseline"] = {
            "column": baseline.column,
            "alpha": baseline.alpha,
            "groups": baseline.groups,
            "groups_with_baseline": baseline.with_baseline,
            "baseline_photos_left_out": baseline.left_out,
        }
    if stats is not None:
        payload["detect"] = {
            "images": stats.images,
            "faces_found": stats.with_face,
            "unreadable": stats.unreadable,
        }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


@click.command("evaluate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON (accuracy and macro_f1 at top level).",
)
@click.option(
    "--tta",
    type=click.Choice(["none", "flip", "ten"]),
    default="ten",
    show_default=True,
    help="Test-time augmentation: none, horizontal flip, or 5 shifted crops x flip.",
)
@click.option("--detect", is_flag=True, help="Run the photo pipeline (detector → crop → classify).")
@click.option(
    "--baseline-by",
    "baseline_by",
    default=None,
    metavar="COLUMN",
    help="With --detect: read DIR/labels.csv, take each COLUMN group's first neutral photo as its calm "
    "face, score the group's other photos relative to it (calm photos left out).",
)
@click.option(
    "--baseline-alpha",
    type=click.FloatRange(0, 4),
    default=None,
    help="Strength of the calm-face correction (default: the manifest's baseline_alpha).",
)
@click.option(
    "--adapter",
    "adapter_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Apply a community adapter file (moodring adapt fit --from ... --out FILE) to every face.",
)
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--detector", type=click.Choice(sorted(DETECTORS)), default=None)
def evaluate_command(
    directory: Path,
    json_out: Path | None,
    tta: Literal["none", "flip", "ten"],  # validated by click.Choice
    detect: bool,
    baseline_by: str | None,
    baseline_alpha: float | None,
    adapter_file: Path | None,
    model_dir: Path | None,
    detector: str | None,
) -> None:
    """Evaluate on DIRECTORY: folders named after the model's classes (any subset of them)."""
    from inference.serve.checkpoint import load_model
    from inference.serve.faces import build_detector
    from inference.serve.model import fold_batchnorm
    from inference.serve.precision import resolve_bf16
    from inference.serve.settings import engine_settings
    from inference.training.data import DatasetError
    from inference.training.metrics import format_report

    settings = engine_settings(model_dir, detector)
    model, manifest = load_model(settings.model_dir)
    model = fold_batchnorm(model.eval())  # the network exactly as the worker serves it
    det = build_detector(settings.face_detector) if detect else None
    adapt = _adapter(adapter_file, settings.model_dir, manifest) if adapter_file else None
    if adapt is not None and baseline_by:
        raise click.UsageError("--adapter with --baseline-by is measured by benchmarks/adapter_sim.py")
    try:
        report, stats, calm = evaluate_dir(
            model,
            manifest,
            directory,
            tta=tta,
            detector=det,  # type: ignore[arg-type]
            bf16=resolve_bf16(settings.bf16),
            baseline_by=baseline_by,
            alpha=baseline_alpha,
            adapt=adapt,
        )
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"model: {manifest.architecture} ({manifest.weights_sha256[:12]}), tta={tta}, "
        f"temperature={manifest.temperature:g}" + (f", adapter {adapter_file}" if adapter_file else "")
    )
    if stats is not None:
        click.echo(f"faces found: {stats.with_face}/{stats.images} photos ({stats.unreadable} unreadable)")
    if calm is not None:
        click.echo(
            f"calm-face baseline by {calm.column!r} (alpha {calm.alpha:g}): {calm.with_baseline} of "
            f"{calm.groups} groups have one; their {calm.left_out} calm photos are not scored"
        )
    click.echo(format_report(report))
    if json_out is not None:
        write_json(
            json_out,
            report,
            stats,
            {
                "tta": tta,
                "temperature": manifest.temperature,
                "weights_sha256": manifest.weights_sha256,
                "data": str(directory),
            },
            calm,
        )


def _adapter(path: Path, model_dir: Path | None, manifest: ModelManifest) -> Adapt:
    """(probs, pooled features) -> probs for an adapter file; a usage error if it doesn't fit."""
    from inference.serve.adapter import Adapter
    from inference.serve.projection import load_projection

    projection = load_projection(model_dir, manifest)
    try:
        adapter = Adapter.from_json(path.read_bytes())
        adapter.check(manifest.classes, projection.sha256 if projection is not None else "")
    except MoodringError as exc:
        raise click.UsageError(f"--adapter {path}: {exc}") from exc

    def adapt(probs: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        return adapter.apply(probs, projection(pooled) if projection is not None else None).astype(np.float32)

    return adapt
