from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inference.api.manifest import ModelManifest
from inference.serve.checkpoint import load_model
from inference.serve.explain import CamClassifier
from inference.training.calibrate import calibrate_command, cross_fit, fit_temperature, nll
from inference.training.predict import predict_probs
from tests.inference.training.test_evaluate import BrightnessModel, _manifest


def _over_confident(n: int, true_t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels really follow softmax(logits / true_t): T = 1 claims too much when true_t > 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, 7))
    p = np.exp(logits / true_t)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(7, p=row) for row in p])
    return logits, labels


def test_fit_recovers_the_temperature_that_generated_the_labels() -> None:
    logits, labels = _over_confident(20000, true_t=2.5)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.08)
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)


def test_fit_is_the_same_on_log_softmax_as_on_logits() -> None:
    logits, labels = _over_confident(3000, true_t=0.6, seed=1)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert fit_temperature(log_probs, labels) == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    assert fit_temperature(logits, labels) < 1.0  # under-confident logits are sharpened


def test_cross_fit_reports_held_out_improvement() -> None:
    logits, labels = _over_confident(4000, true_t=3.0, seed=2)
    report = cross_fit(logits, labels)
    assert report.ece_after < report.ece_before / 2
    assert report.nll_after < report.nll_before
    assert all(t == pytest.approx(3.0, rel=0.2) for t in report.fold_temperatures)
    with pytest.raises(ValueError):
        fit_temperature(logits[:0], labels[:0])


def test_predict_probs_uses_the_manifest_temperature_without_changing_predictions() -> None:
    faces = torch.randint(0, 256, (6, 48, 48), dtype=torch.uint8)
    plain = predict_probs(BrightnessModel(), faces, _manifest(), bf16=False)  # type: ignore[arg-type]
    warm = _manifest().model_copy(update={"temperature": 4.0})
    soft = predict_probs(BrightnessModel(), faces, warm, bf16=False)  # type: ignore[arg-type]
    assert (soft.argmax(1) == plain.argmax(1)).all()
    # logits are +5 for one class and -5 for the rest: softmax(logits / 4)
    top = np.exp(10 / 4) / (np.exp(10 / 4) + 6)
    assert soft.max(1) == pytest.approx(np.full(6, top), abs=1e-5)
    assert plain.max(1).min() > soft.max(1).max()
    forced = predict_probs(BrightnessModel(), faces, warm, bf16=False, temperature=1.0)  # type: ignore[arg-type]
    assert np.allclose(forced, plain)


def test_cam_classifier_scales_probabilities_only(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    x = torch.randn(2, 1, 32, 32)
    with CamClassifier(model, manifest.target_layer, bf16=False) as cam:
        base = cam(x)
    with CamClassifier(model, manifest.target_layer, bf16=False, temperature=3.0) as cam:
        warm = cam(x)
    with torch.no_grad():
        ref = torch.softmax(model(x) / 3.0, 1).numpy()
    assert np.allclose(warm.probs, ref, atol=1e-4)
    assert np.allclose(warm.maps, base.maps, atol=1e-5)
    with pytest.raises(ValueError):
        CamClassifier(model, manifest.target_layer, temperature=0.0)


def test_calibrate_command_writes_temperature_and_keeps_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    rng = np.random.default_rng(0)
    for name in ("happy", "sad", "fear"):
        (tmp_path / "val" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / name / f"{i}.png")
    before = ModelManifest.load(model_dir / "manifest.json")
    result = CliRunner().invoke(
        calibrate_command, [str(model_dir), "--val", str(tmp_path / "val"), "--write"]
    )
    assert result.exit_code == 0, result.output
    assert "cross-fitted" in result.output
    after = ModelManifest.load(model_dir / "manifest.json")
    assert after.temperature != before.temperature == 1.0
    assert after.model_copy(update={"temperature": 1.0}) == before
    load_model(model_dir)  # weights and their sha256 untouched
