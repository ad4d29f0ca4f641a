from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inference.api.manifest import ModelManifest
from inference.training.data import FER2013_CLASSES as EMOTIONS
from inference.training.data import DatasetError, list_imagefolder
from inference.training.evaluate import evaluate_dir, predict_probs


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
    report, stats = evaluate_dir(BrightnessModel(), _manifest(), root, tta="ten", bf16=False)
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
