"""Evaluate a checkpoint on any ImageFolder tree (classes mapped by folder name)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import click
import numpy as np
from torch import nn

from inference.api.errors import MoodringError
from inference.api.manifest import ModelManifest
from inference.cli_options import EXISTING_DIR, OUT_FILE, adapter_option, model_dir_option
from inference.serve.faces import FaceDetector, detector_names
from inference.training.data import DatasetError, load_faces
from inference.training.metrics import Report, classification_report
from inference.training.photos import (
    BaselineStats,
    DetectStats,
    apply_calm_baselines,
    photo_probs,
    read_groups,
)
from inference.training.predict import Adapt, Tta, predict_probs

log = logging.getLogger(__name__)


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
@click.argument("directory", type=EXISTING_DIR)
@click.option(
    "--json",
    "json_out",
    type=OUT_FILE,
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
@adapter_option
@model_dir_option
@click.option("--detector", type=click.Choice(detector_names()), default=None)
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
    import torch

    from inference.serve.checkpoint import load_model
    from inference.serve.faces import build_detector
    from inference.serve.model import fold_batchnorm
    from inference.serve.precision import serving_network
    from inference.serve.settings import engine_settings
    from inference.training.data import DatasetError
    from inference.training.metrics import format_report

    settings = engine_settings(model_dir, detector)
    model, manifest = load_model(settings.model_dir)
    model = fold_batchnorm(model.eval())  # the network exactly as the worker serves it
    model, served, bf16 = serving_network(
        model, manifest, settings.model_dir, settings.precision, settings.bf16, torch.device("cpu")
    )
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
            bf16=bool(bf16),  # resolved by serving_network (the CPU's, or MOODRING_BF16)
            baseline_by=baseline_by,
            alpha=baseline_alpha,
            adapt=adapt,
        )
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"model: {manifest.architecture} ({manifest.weights_sha256[:12]}, {served}), tta={tta}, "
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
