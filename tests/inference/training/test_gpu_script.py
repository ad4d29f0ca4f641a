"""The lent-GPU script end to end on the CPU with a tiny dataset: teachers, then a distilled student."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference.serve.checkpoint import load_model
from tests.inference.training.test_train import _folder

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(600)
def test_teachers_then_a_distilled_student_export_in_parts(tmp_path: Path) -> None:
    out, run = tmp_path / "out", tmp_path / "run"
    cmd = [
        sys.executable, "-m", "inference.training.gpu",
        "--device", "cpu", "--no-bf16",
        "--budget-s", "240", "--export-reserve-s", "60", "--startup-s", "10",
        "--data", str(_folder(tmp_path / "train", 8, 0)),
        "--val", str(_folder(tmp_path / "val", 2, 1)),
        "--batch-size", "16", "--max-epochs", "1",
        "--teachers", "2", "--photo-aug", "0.5",
        "--teacher-dir", str(ROOT / "inference" / "weights"), "--teacher-view", "clean",
        "--out", str(out), "--run-dir", str(run),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    numbers = json.loads((out / "probe.json").read_text())
    assert numbers["teachers_finished"] == 2
    assert 0.0 <= numbers["ensemble_val_accuracy_tta"] <= 1.0
    for k in (1, 2):  # each teacher is a model of its own seed
        assert (tmp_path / f"run-teacher{k}" / "manifest.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    command = manifest["train_command"]
    assert command.count("--teacher ") == 3 and "--distill" in command  # the committed model + 2 seeds
    assert str(ROOT / "inference" / "weights") in command and "--teacher-view clean" in command
    joined = b"".join(p.read_bytes() for p in sorted(out.glob("model.safetensors.part*")))
    assert joined == (run / "model.safetensors").read_bytes()
    load_model(run)
