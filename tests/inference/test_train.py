"""Training, resuming and epoch averaging on a tiny generated ImageFolder (real ResNet50, CPU)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from PIL import Image

from inference.average import average_run, average_states, kept_epochs
from inference.checkpoint import load_model
from inference.emotions import EMOTIONS
from inference.train import TrainConfig, augment, epoch_path, resolve_device, subcommand_args, train


def _folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i, name in enumerate(EMOTIONS):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            # classes differ in brightness, so there is something to learn
            pixels = rng.integers(0, 256, (48, 48), dtype=np.uint8) // 2 + i * 16
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{j}.jpg")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, Path]:
    base = tmp_path_factory.mktemp("fer")
    cfg = TrainConfig(
        data=str(_folder(base / "train", 4, 0)),
        val=str(_folder(base / "val", 2, 1)),
        out_dir=str(base / "run"),
        schedule=((16, 2), (24, 1)),
        batch_size=8,
        threads=1,
        seed=3,
    )
    torch.manual_seed(0)
    train(cfg, keep_epochs=True)
    return cfg, Path(cfg.out_dir)


def test_train_exports_a_loadable_model_and_keeps_every_epoch(run: tuple[TrainConfig, Path]) -> None:
    _, out = run
    model, manifest = load_model(out)
    assert manifest.classes == tuple(EMOTIONS) and manifest.input_size == 48 and manifest.cam_size == 6
    assert manifest.val_accuracy is not None and 0.0 <= manifest.val_accuracy <= 1.0
    assert sorted(kept_epochs(out)) == [1, 2, 3]
    assert all(epoch_path(out, e).is_file() for e in (1, 2, 3))
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 48, 48)).shape == (2, len(EMOTIONS))


def test_resume_continues_from_the_checkpoint_and_refuses_another_config(
    run: tuple[TrainConfig, Path],
) -> None:
    cfg, out = run
    before = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    train(cfg)  # all epochs done: resumes at the end, trains nothing, re-exports
    after = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert after["epoch"] == before["epoch"] == 2
    assert torch.equal(after["model"]["fc.weight"], before["model"]["fc.weight"])
    with pytest.raises(click.UsageError, match="another config"):
        train(replace(cfg, lr=cfg.lr * 2))


def test_resume_refuses_a_checkpoint_made_on_another_device(run: tuple[TrainConfig, Path]) -> None:
    cfg, out = run
    original = (out / "last.pt").read_bytes()
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["device_type"] == "cpu"
    ckpt["device_type"] = "cuda"  # a GPU generator's state can't seed a CPU one
    torch.save(ckpt, out / "last.pt")
    try:
        with pytest.raises(click.UsageError, match="made on cuda"):
            train(cfg)
    finally:
        (out / "last.pt").write_bytes(original)


def test_augment_is_reproducible_from_the_generator_and_stays_on_its_device() -> None:
    cfg = TrainConfig(data="", val="", out_dir="")
    faces = torch.randint(0, 256, (6, 48, 48), dtype=torch.uint8)
    a = augment(faces, 40, cfg, (0.5,), (0.25,), torch.Generator().manual_seed(1))
    b = augment(faces, 40, cfg, (0.5,), (0.25,), torch.Generator().manual_seed(1))
    c = augment(faces, 40, cfg, (0.5,), (0.25,), torch.Generator().manual_seed(2))
    assert a.shape == (6, 1, 40, 40) and a.device.type == "cpu"
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_device_and_command_line_helpers() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    # the recorded command drops the program (and the sub-command when run as `moodring train`)
    assert subcommand_args(["/usr/bin/moodring", "train", "--lr", "1"]) == ["--lr", "1"]
    assert subcommand_args(["/src/moodring/inference/train.py", "--lr", "1"]) == ["--lr", "1"]


def test_average_states_means_floats_and_keeps_counters() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 9
    with pytest.raises(ValueError):
        average_states([])


def test_average_run_exports_the_mean_of_the_last_epochs_with_fresh_bn(
    run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    _, out = run
    manifest = average_run(out, tmp_path / "avg", last=2)
    model, loaded = load_model(tmp_path / "avg")
    assert loaded == manifest and "epochs 2-3" in manifest.notes
    e2 = torch.load(epoch_path(out, 2), map_location="cpu", weights_only=True)
    e3 = torch.load(epoch_path(out, 3), map_location="cpu", weights_only=True)
    state = model.state_dict()
    expected = (e2["conv1.weight"] + e3["conv1.weight"]) / 2
    assert torch.allclose(state["conv1.weight"], expected, atol=2e-3)  # weights are stored in fp16
    # BatchNorm statistics were re-estimated, not averaged: they match neither epoch's mean.
    avg_stats = (e2["bn1.running_mean"] + e3["bn1.running_mean"]) / 2
    assert not torch.allclose(state["bn1.running_mean"], avg_stats, atol=1e-3)
    assert torch.isfinite(state["bn1.running_var"]).all() and (state["bn1.running_var"] > 0).all()
    with pytest.raises(click.UsageError, match="--last 4 needs more"):
        average_run(out, tmp_path / "avg4", last=4)
