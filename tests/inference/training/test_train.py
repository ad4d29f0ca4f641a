"""Training, resuming and epoch averaging on a tiny generated ImageFolder (real ResNet50, CPU)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from PIL import Image

from inference.serve.checkpoint import load_model
from inference.training.augment import augment, mix
from inference.training.average import average_run, average_states, interpolate_models, kept_epochs
from inference.training.config import TrainConfig, subcommand_args
from inference.training.data import FER2013_CLASSES as EMOTIONS
from inference.training.step import Ema, training_step
from inference.training.train import epoch_path, resolve_device, train


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


def test_resume_accepts_a_checkpoint_from_before_mixing_and_ema_existed(
    run: tuple[TrainConfig, Path],
) -> None:
    cfg, out = run
    original = (out / "last.pt").read_bytes()
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    for key in ("mix_p", "ema_decay"):  # what the config of a checkpoint from commit 893866b looks like
        del ckpt["config"][key]
    torch.save(ckpt, out / "last.pt")
    try:
        train(cfg)  # same run: the missing fields mean their defaults (off), which it was trained with
        with pytest.raises(click.UsageError, match="another config"):
            train(replace(cfg, mix_p=0.5))
    finally:
        (out / "last.pt").write_bytes(original)


def test_mix_pastes_or_blends_the_partner_and_weights_targets_by_what_was_kept() -> None:
    b, classes = 7, len(EMOTIONS)
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, 12, 12).contiguous()
    y = torch.arange(b)  # face i has value i and class i; its partner is face i - 1
    out, target = mix(x, y, classes, 1.0, torch.Generator().manual_seed(4))
    assert out.shape == x.shape and target.shape == (b, classes)
    assert torch.allclose(target.sum(1), torch.ones(b))
    kinds = set()
    for i in range(b):
        own, partner = float(i), float((i - 1) % b)
        pixels = out[i].flatten()
        lam = float(target[i, i])
        assert lam + float(target[i, (i - 1) % b]) == pytest.approx(1.0)
        if torch.isin(pixels, torch.tensor([own, partner])).all():  # CutMix: a pasted box
            kinds.add("cut")
            assert float((pixels == own).float().mean()) == pytest.approx(lam)
        else:  # mixup: every pixel the same blend
            kinds.add("blend")
            assert torch.allclose(pixels, torch.full_like(pixels, lam * own + (1 - lam) * partner))
    assert kinds == {"cut", "blend"}  # p = 1: every face mixed, both ways used (seed 4)
    same, onehot = mix(x, y, classes, 0.0, torch.Generator().manual_seed(4))
    assert torch.equal(same, x) and torch.equal(onehot, torch.eye(classes)[:b])


def test_ema_averages_weights_and_batchnorm_statistics_but_not_counters() -> None:
    live = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = Ema(live, decay=0.75)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    start = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        live[0].weight.add_(4.0)
        live[1].running_mean.add_(8.0)
        live[1].num_batches_tracked.add_(5)
    ema.update()
    state = ema.model.state_dict()
    assert torch.allclose(state["0.weight"], start["0.weight"] + 1.0)  # 0.75 old + 0.25 new
    assert torch.allclose(state["1.running_mean"], start["1.running_mean"] + 2.0)
    assert int(state["1.num_batches_tracked"]) == int(start["1.num_batches_tracked"])


def test_training_with_mixing_and_ema_selects_and_checkpoints_the_average(
    run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    base, _ = run
    cfg = replace(base, out_dir=str(tmp_path / "ema"), schedule=((16, 2),), mix_p=1.0, ema_decay=0.5)
    train(cfg, keep_epochs=True)
    ckpt = torch.load(tmp_path / "ema" / "last.pt", map_location="cpu", weights_only=True)
    kept = torch.load(epoch_path(tmp_path / "ema", 2), map_location="cpu", weights_only=True)
    # what is kept (and selected as best) is the average, not the live weights
    assert torch.equal(kept["fc.weight"], ckpt["ema"]["fc.weight"])
    assert not torch.equal(ckpt["ema"]["fc.weight"], ckpt["model"]["fc.weight"])
    train(cfg)  # resumes at the end with the average restored, re-exports
    model, _ = load_model(tmp_path / "ema")
    best = torch.load(tmp_path / "ema" / "best.pt", map_location="cpu", weights_only=True)
    assert torch.allclose(model.state_dict()["fc.weight"], best["fc.weight"], atol=2e-3)


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
    assert subcommand_args(["/src/moodring/inference/training/train.py", "--lr", "1"]) == ["--lr", "1"]


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


def test_interpolate_exports_the_line_between_two_models_and_refuses_other_inputs(
    run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    cfg, out = run
    base, base_manifest = load_model(out)
    # the exported model is the best epoch: mix in the kept epoch furthest from it
    epochs = {e: torch.load(epoch_path(out, e), map_location="cpu", weights_only=True) for e in (1, 2, 3)}
    tuned = max(
        epochs, key=lambda e: float((epochs[e]["fc.weight"] - base.state_dict()["fc.weight"]).abs().sum())
    )
    tuned_state = epochs[tuned]
    manifest = interpolate_models(out, epoch_path(out, tuned), 0.25, tmp_path / "mid", Path(cfg.val))
    mid, loaded = load_model(tmp_path / "mid")
    assert loaded == manifest and "0.75 x" in manifest.notes and "0.25 x" in manifest.notes
    assert manifest.val_accuracy is not None and manifest.val_accuracy_tta is None
    # inputs, temperature and calm-face alpha are the base's; the weights are new
    for field in ("classes", "mean", "std", "input_size", "temperature", "baseline_alpha"):
        assert getattr(manifest, field) == getattr(base_manifest, field)
    assert manifest.weights_sha256 != base_manifest.weights_sha256
    # every weight and BatchNorm statistic is (1 - a) x base + a x tuned (fp16 storage)
    for key in ("conv1.weight", "fc.weight", "bn1.running_mean", "layer4.2.bn3.running_var"):
        expected = 0.75 * base.state_dict()[key] + 0.25 * tuned_state[key].float()
        assert torch.allclose(mid.state_dict()[key], expected, atol=2e-3, rtol=1e-3), key
    # an exported model works as TUNED too: alpha 1 is that model
    interpolate_models(out, tmp_path / "mid", 1.0, tmp_path / "end", Path(cfg.val))
    end, _ = load_model(tmp_path / "end")
    assert torch.allclose(end.state_dict()["fc.weight"], mid.state_dict()["fc.weight"], atol=1e-3)
    # a model fed other inputs can't be mixed in
    other = tmp_path / "other"
    other.mkdir()
    (other / loaded.weights_file).write_bytes((tmp_path / "mid" / loaded.weights_file).read_bytes())
    loaded.model_copy(update={"mean": (0.1,)}).dump(other / "manifest.json")
    with pytest.raises(click.UsageError, match="mean"):
        interpolate_models(out, other, 0.5, tmp_path / "bad", Path(cfg.val))


class _Fixed(torch.nn.Module):
    """A 'teacher' that always gives the same logits."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_distillation_mixes_the_teachers_mean_probabilities_into_the_target() -> None:
    """The step's loss is (1 - a) x label loss + a x cross-entropy to the teachers' mean."""
    cfg = TrainConfig(data="", val="", out_dir="", distill=0.7, bf16=False, jitter=0.0, erase_p=0.0)
    n = len(EMOTIONS)
    teachers = [_Fixed([2.0] + [0.0] * (n - 1)), _Fixed([0.0, 2.0] + [0.0] * (n - 2))]
    soft = (torch.softmax(teachers[0].logits, 0) + torch.softmax(teachers[1].logits, 0)) / 2
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, n))
    faces = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    labels = torch.tensor([3, 4, 5, 6])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the loss is of the model as it is
    criterion = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    loss, logits = training_step(
        model, opt, criterion, faces, labels, 48, cfg, (0.5,), (0.25,), gen, None, teachers
    )
    logp = torch.log_softmax(logits, dim=1)
    label_loss = -logp[torch.arange(4), labels].mean()
    teacher_loss = -(soft * logp).sum(1).mean()
    assert float(loss) == pytest.approx(float(0.3 * label_loss + 0.7 * teacher_loss), rel=1e-5)
    assert float(teacher_loss) != pytest.approx(float(label_loss), rel=1e-2)  # the two terms differ


def test_a_student_trains_from_a_teacher_and_resumes_with_the_same_config(
    run: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    base, teacher_dir = run
    out = tmp_path / "student"
    cfg = replace(base, out_dir=str(out), schedule=((16, 1),), teachers=(str(teacher_dir),), distill=0.7)
    train(cfg)
    load_model(out)  # exported and loadable
    stored = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["config"]
    assert stored["teachers"] == [str(teacher_dir)] and stored["distill"] == 0.7
    train(cfg)  # the stored config (teachers included) equals this one: resumes instead of refusing
    with pytest.raises(click.UsageError):
        train(replace(cfg, distill=0.5))


def test_augment_clean_copy_shares_every_draw_but_the_photo_degradations() -> None:
    faces = torch.randint(0, 256, (6, 48, 48), dtype=torch.uint8)
    for photo_p in (0.0, 1.0):
        cfg = TrainConfig(data="", val="", out_dir="", photo_p=photo_p)
        plain = augment(faces, 48, cfg, (0.5,), (0.25,), torch.Generator().manual_seed(4))
        pair = augment(faces, 48, cfg, (0.5,), (0.25,), torch.Generator().manual_seed(4), clean_copy=True)
        assert pair.shape == (6, 2, 48, 48)
        assert torch.equal(pair[:, :1], plain)  # the student's view is unchanged by the copy
        # same geometry, jitter and erasing: the views differ only where faces were degraded
        assert torch.equal(pair[:, 1:], pair[:, :1]) == (photo_p == 0.0)


class _Spy(torch.nn.Module):
    """Records its input; with ``n`` classes, answers fixed logits (a teacher)."""

    def __init__(self, n: int = 0) -> None:
        super().__init__()
        self.n = n
        self.seen = torch.empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return torch.zeros(x.shape[0], self.n) if self.n else x


@pytest.mark.parametrize("view", ["same", "clean"])
def test_the_teacher_sees_the_face_before_the_degradations_when_asked(view: str) -> None:
    n = len(EMOTIONS)
    cfg = TrainConfig(
        data="", val="", out_dir="", distill=0.7, bf16=False, photo_p=1.0, mix_p=0.5, teacher_view=view
    )
    teacher, student_input = _Spy(n), _Spy()
    model = torch.nn.Sequential(student_input, torch.nn.Flatten(), torch.nn.Linear(48 * 48, n))
    faces = torch.randint(0, 256, (8, 48, 48), dtype=torch.uint8)
    labels = torch.arange(8) % n
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    training_step(
        model,
        opt,
        torch.nn.CrossEntropyLoss(),
        faces,
        labels,
        48,
        cfg,
        (0.5,),
        (0.25,),
        torch.Generator().manual_seed(0),
        None,
        [teacher],
    )
    # the same draws by hand: both views augmented together, then mixed together
    gen = torch.Generator().manual_seed(0)
    pair = augment(faces, 48, cfg, (0.5,), (0.25,), gen, clean_copy=True)
    pair, _ = mix(pair, labels, n, cfg.mix_p, gen)
    degraded, clean = pair[:, :1], pair[:, 1:]
    assert not torch.equal(degraded, clean)
    if view == "clean":
        assert torch.equal(student_input.seen, degraded) and torch.equal(teacher.seen, clean)
    else:
        assert torch.equal(teacher.seen, student_input.seen)
