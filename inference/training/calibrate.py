"""Temperature scaling: one scalar T that softens (T > 1) or sharpens over-/under-confident softmax outputs.

``softmax(logits / T)`` keeps every single-view prediction (argmax) and so its accuracy, and
only changes how much the probabilities claim. (Test-time augmentation averages the scaled
probabilities of several views, so there T can flip a near-tie; the model card gives how many.) T is fitted
by minimising the negative log-likelihood on labelled faces. Fitting and reporting on the same
faces would flatter the result, so ``moodring calibrate`` reports the expected calibration
error *cross-fitted* (T fitted on one half of the faces, ECE measured on the other, and the
other way round) and then stores the T fitted on all of them in the manifest, where
``predict_probs`` (`moodring evaluate`) and the predictor's Grad-CAM pass pick it up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from inference.cli_options import EXISTING_DIR, val_option
from inference.training.metrics import expected_calibration_error

T_MIN, T_MAX = 0.05, 20.0


def _scaled_log_softmax(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """``log softmax(log_probs / T)`` in float64, stable for any T."""
    z = log_probs.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    out: np.ndarray = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return out


def _mean_nll(log_p: np.ndarray, labels: np.ndarray) -> float:
    return float(-log_p[np.arange(len(labels)), labels].mean())


def nll(log_probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(log_probs / T)``."""
    return _mean_nll(_scaled_log_softmax(log_probs, temperature), labels)


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray, iters: int = 80) -> float:
    """The T in [T_MIN, T_MAX] minimising NLL (golden-section search on log T; NLL is unimodal in it).

    ``log_probs`` may be logits or log-softmax outputs: they differ by a per-row constant,
    which dividing by T leaves a per-row constant, so softmax gives the same answer.
    """
    if len(labels) == 0:
        raise ValueError("no faces to fit a temperature on")
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(log_probs, labels, math.exp(a)), nll(log_probs, labels, math.exp(b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(log_probs, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(log_probs, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    temperature: float  # fitted on all faces: what ships
    fold_temperatures: tuple[float, float]
    ece_before: float  # T = 1 on all faces
    ece_after: float  # cross-fitted: every face scored with the T fitted on the other half
    nll_before: float
    nll_after: float  # cross-fitted too


def cross_fit(log_probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> CalibrationReport:
    """Fit T on each half of a random split and score the other half; then fit T on everything."""
    n = len(labels)
    if n < 2:
        raise ValueError("cross-fitting needs at least two faces")
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    held_out = np.zeros((n, log_probs.shape[1]), dtype=np.float64)  # log-probabilities
    fold_ts = []
    for fit_idx, score_idx in (halves, halves[::-1]):
        t = fit_temperature(log_probs[fit_idx], labels[fit_idx])
        fold_ts.append(t)
        held_out[score_idx] = _scaled_log_softmax(log_probs[score_idx], t)
    before = _scaled_log_softmax(log_probs, 1.0)
    return CalibrationReport(
        temperature=fit_temperature(log_probs, labels),
        fold_temperatures=(fold_ts[0], fold_ts[1]),
        ece_before=expected_calibration_error(np.exp(before), labels),
        ece_after=expected_calibration_error(np.exp(held_out), labels),
        nll_before=_mean_nll(before, labels),
        nll_after=_mean_nll(held_out, labels),
    )


@click.command("calibrate")
@click.argument("model_dir", type=EXISTING_DIR)
@val_option("Labelled faces (ImageFolder) to fit the temperature on.", dest="val_dir")
@click.option("--write", is_flag=True, help="Store the fitted temperature in MODEL_DIR/manifest.json.")
def calibrate_command(model_dir: Path, val_dir: Path, write: bool) -> None:
    """Fit a softmax temperature for MODEL_DIR and report its cross-fitted calibration error."""
    from inference.api.manifest import MANIFEST_FILE
    from inference.serve.checkpoint import load_model
    from inference.serve.precision import resolve_bf16
    from inference.serve.settings import engine_settings
    from inference.training.data import load_faces
    from inference.training.predict import predict_probs

    settings = engine_settings(model_dir, None)  # like evaluate: logging, torch threads, MOODRING_BF16
    model, manifest = load_model(settings.model_dir)
    data = load_faces(val_dir, manifest.input_size, tuple(str(c) for c in manifest.classes))
    # single view, T = 1: log-probabilities are the logits up to a per-row constant
    bf16 = resolve_bf16(settings.bf16)
    probs = predict_probs(model, data.images, manifest, tta="none", bf16=bf16, temperature=1.0)
    log_probs = np.log(np.maximum(probs, np.finfo(np.float32).tiny))
    report = cross_fit(log_probs, data.labels.numpy())
    click.echo(
        f"temperature {report.temperature:.3f} (halves: {report.fold_temperatures[0]:.3f}, "
        f"{report.fold_temperatures[1]:.3f}) on {len(data.labels)} faces from {val_dir}"
    )
    click.echo(f"ECE {report.ece_before:.4f} at T=1 -> {report.ece_after:.4f} cross-fitted")
    click.echo(f"NLL {report.nll_before:.4f} at T=1 -> {report.nll_after:.4f} cross-fitted")
    if write:
        updated = manifest.model_copy(update={"temperature": round(report.temperature, 4)})
        updated.dump(model_dir / MANIFEST_FILE)
        click.echo(f"wrote temperature {updated.temperature} to {model_dir / MANIFEST_FILE}")
