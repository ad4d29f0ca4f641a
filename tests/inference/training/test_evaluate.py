from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inference.api.manifest import ModelManifest
from inference.training.data import FER2013_CLASSES as EMOTIONS
from inference.training.data import DatasetError, list_imagefolder
from inference.training.evaluate import evaluate_dir, write_json
from inference.training.photos import DetectStats, PhotoProbs, apply_calm_baselines
from inference.training.predict import predict_probs


class BrightnessModel(nn.Module):
    """Predicts 'happy' for bright faces and 'sad' for dark ones (known, name-based truth)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x.mean(dim=(1, 2, 3)) > 0
        logits = torch.full((x.shape[0], len(EMOTIONS)), -5.0)
        logits[bright, EMOTIONS.index("happy")] = 5.0
        logits[~bright, EMOTIONS.index("sad")] = 5.0
        return logits


def _manifest() -> ModelManifest:
    return ModelManifest(
        stem="conv3x3s1-maxpool",
        classes=EMOTIONS,
        input_size=48,
        mean=(0.5,),
        std=(0.25,),
        target_layer="layer3",
        cam_size=6,
        weights_file="x",
        weights_sha256="0",
    )


def _tree(root: Path, spec: dict[str, int]) -> Path:
    for name, value in spec.items():
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((48, 48), value, dtype=np.uint8)).save(root / name / f"{i}.jpg")
    return root


def test_classes_are_mapped_by_name_with_missing_folders(tmp_path: Path) -> None:
    # Only two of seven classes exist; index-based mapping would call them angry/disgust.
    root = _tree(tmp_path / "data", {"sad": 20, "happy": 240})
    report, stats, _ = evaluate_dir(BrightnessModel(), _manifest(), root, tta="ten", bf16=False)
    assert stats is None
    assert report.accuracy == pytest.approx(1.0)
    assert report.macro_f1 == pytest.approx(1.0)
    supports = {c.name: c.support for c in report.per_class}
    assert supports["happy"] == 3 and supports["sad"] == 3 and supports["angry"] == 0


def test_unknown_class_folder_is_an_error(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"happy": 200, "bored": 10})
    with pytest.raises(DatasetError, match="bored"):
        list_imagefolder(root)


def test_tta_views_average_to_a_distribution() -> None:
    faces = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    for tta in ("none", "flip", "ten"):
        probs = predict_probs(BrightnessModel(), faces, _manifest(), tta=tta, bf16=False)  # type: ignore[arg-type]
        assert probs.shape == (5, 7)
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def _photos(paths: list[str], labels: list[str], probs: list[list[float]]) -> PhotoProbs:
    n = len(paths)
    return PhotoProbs(
        tuple(paths),
        np.array([EMOTIONS.index(label) for label in labels]),
        np.array(probs, dtype=np.float32),
        np.ones(n, dtype=bool),
        DetectStats(n, n, 0),
    )


def _p(**kw: float) -> list[float]:
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return [kw.get(c, rest) for c in EMOTIONS]


def test_calm_baseline_reads_each_person_relative_to_their_first_neutral_photo() -> None:
    # Person a's face reads "sad" at rest: their calm photo and their neutral photo both lean sad.
    photos = _photos(
        ["neutral/a2.jpg", "neutral/a1.jpg", "neutral/b1.jpg", "happy/b2.jpg", "sad/c1.jpg"],
        ["neutral", "neutral", "neutral", "happy", "sad"],
        [_p(sad=0.55, neutral=0.4), _p(sad=0.6, neutral=0.35), _p(neutral=0.9), _p(happy=0.7), _p(sad=0.8)],
    )
    groups = {"neutral/a1.jpg": "a", "neutral/a2.jpg": "a", "neutral/b1.jpg": "b", "happy/b2.jpg": "b"}
    before = photos.probs.argmax(1)
    probs, keep, stats = apply_calm_baselines(photos, groups, EMOTIONS, alpha=1.0, column="who")
    assert keep.tolist() == [True, False, False, True, True]  # a1 (first in path order) and b1 are calm faces
    assert (stats.groups, stats.with_baseline, stats.left_out) == (2, 2, 2)
    assert EMOTIONS[before[0]] == "sad" and EMOTIONS[probs[0].argmax()] == "neutral"  # a's lean divided out
    assert EMOTIONS[probs[3].argmax()] == "happy"
    assert np.allclose(probs[4], photos.probs[4])  # c has no group: read as it is
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    none, _, _ = apply_calm_baselines(photos, groups, EMOTIONS, alpha=0.0)
    assert np.allclose(none, photos.probs)  # alpha 0: the baseline changes nothing


def test_evaluate_baseline_by_reads_labels_csv(tmp_path: Path) -> None:
    from inference.serve.detectors.full import FullFrameDetector

    root = _tree(tmp_path / "data", {"neutral": 20, "happy": 240})
    (root / "labels.csv").write_text(
        "path,label,performer\n"
        + "".join(f"neutral/{i}.jpg,neutral,p{i}\n" for i in range(3))
        + "".join(f"happy/{i}.jpg,happy,p{i}\n" for i in range(3))
    )
    report, stats, calm = evaluate_dir(
        BrightnessModel(),
        _manifest(),
        root,
        detector=FullFrameDetector(),
        bf16=False,
        baseline_by="performer",
    )
    assert stats is not None and stats.images == 6
    assert calm is not None and (calm.groups, calm.with_baseline, calm.left_out) == (3, 3, 3)
    assert report.n == 3  # the three calm photos are not scored
    out = tmp_path / "out.json"
    write_json(out, report, stats, {}, calm)
    payload = json.loads(out.read_text())
    assert payload["accuracy"] == pytest.approx(1.0) and payload["groups_with_baseline"] == 3
    (root / "labels.csv").unlink()
    with pytest.raises(DatasetError, match=r"labels\.csv"):
        evaluate_dir(
            BrightnessModel(), _manifest(), root, detector=FullFrameDetector(), baseline_by="performer"
        )


class _Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    """`moodring evaluate` runs for minutes: a bar on a terminal, nothing in CI, pipes or tests."""
    err = _Stderr(tty)
    monkeypatch.setattr(sys, "stderr", err)
    faces = [np.full((48, 48), v, np.uint8) for v in range(0, 250, 10)]
    model = BrightnessModel()
    probs = predict_probs(model, faces, _manifest(), bf16=False, batch_size=4, progress="classifying")  # type: ignore[arg-type]
    assert probs.shape == (25, 7)
    assert ("classifying" in err.getvalue()) is tty
