"""`moodring quantize` end to end on a tiny model and tiny face folders: the file, the manifest's
checks, and the rule decided from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inference.api.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from inference.serve.quantize import INT8_FILE, int8_kernels
from inference.training.quantize_check import every_kth, top_region_iou
from inference.training.quantize_cli import quantize_command


def _faces(root: Path, size: int, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for name in ("happy", "sad", "neutral"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            face = rng.integers(0, 255, (size, size), dtype=np.uint8)
            Image.fromarray(face).save(root / name / f"{i}.jpg")
    return root


def test_top_region_iou_and_the_spread_of_picked_faces() -> None:
    a = np.zeros((1, 10, 10), dtype=np.float32)
    a[0, :2, :] = 1.0  # the top 20 % is the first two rows
    assert top_region_iou(a, a)[0] == pytest.approx(1.0)
    assert top_region_iou(a, a[:, ::-1, :].copy())[0] == pytest.approx(0.0)
    assert list(every_kth(10, 3)) == [0, 3, 6]
    assert list(every_kth(2, 5)) == [0, 1]


@pytest.mark.skipif(not int8_kernels(), reason="no x86 int8 kernels in this PyTorch/CPU")
def test_quantize_writes_the_file_and_measures_the_rule_into_the_manifest(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    faces = _faces(tmp_path / "faces", 32)
    monkeypatch.setenv("MOODRING_FACE_DETECTOR", "full")  # the "photos" are already faces
    args = ["--model-dir", str(folder), "--data", str(faces), "--faces", "16", "--val", str(faces)]
    out = CliRunner().invoke(quantize_command, [*args, "--photos", str(faces)])
    assert out.exit_code == 0, out.output
    manifest = ModelManifest.load(folder / MANIFEST_FILE)
    assert manifest.int8_file == INT8_FILE
    assert manifest.int8_sha256 == sha256_file(folder / INT8_FILE)
    checks = manifest.int8_checks
    for key in ("fer_val_delta_points", "photos_delta_points", "cam_top20_iou", "cam_label_agree"):
        assert key in checks
    assert checks["photos_n"] == 12 and checks["cam_faces"] == 12
    assert 0.0 <= checks["cam_top20_iou"] <= 1.0
    expected = (
        abs(checks["fer_val_delta_points"]) <= 0.3
        and abs(checks["photos_delta_points"]) <= 0.5
        and checks["cam_top20_iou"] >= 0.85
    )
    assert manifest.int8_meets_rule is expected
    assert ("rule met" if expected else "rule NOT met") in out.output

    again = CliRunner().invoke(quantize_command, [*args, "--skip-check"])
    assert again.exit_code == 0, again.output
    rewritten = ModelManifest.load(folder / MANIFEST_FILE)
    assert rewritten.int8_sha256 == manifest.int8_sha256  # the same faces give the same file
    assert (
        rewritten.int8_meets_rule is False and rewritten.int8_checks == {}
    )  # unmeasured: not served by auto
