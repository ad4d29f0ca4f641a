"""Train the FER2013 ResNet50 on a CPU or a GPU (bf16 autocast where it pays, channels_last), resumable.

Run ``moodring train`` or ``python -m inference.training.train``; see ``--help``.
"""

from __future__ import annotations

import copy
import logging
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import click
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from inference.api.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from inference.serve.checkpoint import load_model
from inference.serve.model import STEM_FER, build_resnet50, param_groups
from inference.serve.precision import cpu_has_native_bf16
from inference.serve.preprocess import normalize
from inference.training.data import FER2013_CLASSES, FaceSet, load_faces
from inference.training.degrade import degrade
from inference.training.evaluate import predict_probs

log = logging.getLogger(__name__)

TARGET_LAYER = "layer3"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one run; stored in the checkpoint so a resume can't drift."""

    data: str
    val: str
    out_dir: str
    schedule: tuple[tuple[int, int], ...] = ((32, 16), (40, 10), (48, 10))
    eval_size: int = 48
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_frac: float = 0.15
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.85, 1.15)
    translate: float = 0.1
    jitter: float = 0.2
    erase_p: float = 0.5
    mix_p: float = 0.0
    photo_p: float = 0.0  # each photo-path degradation's probability (inference.training.degrade)
    ema_decay: float = 0.0
    threads: int = 2
    seed: int = 0
    limit: int | None = None
    bf16: bool = True
    init_from: str | None = None
    # knowledge distillation (issue 19): exported model directories whose averaged probabilities
    # on each augmented batch are mixed into the targets with weight ``distill``
    teachers: tuple[str, ...] = ()
    distill: float = 0.0
    # "clean": the teachers see each face before the photo-path degradations (same geometry,
    # jitter, erasing and mixing), so the student learns to read a degraded face as the teachers
    # read the clean one; "same": the teachers see exactly the student's input
    teacher_view: Literal["same", "clean"] = "same"
    command: str = field(default="")

    @property
    def epochs(self) -> int:
        return sum(n for _, n in self.schedule)

    def size_at(self, epoch: int) -> int:
        """Input size used in a given (0-based) epoch: progressive resizing."""
        seen = 0
        for size, n in self.schedule:
            seen += n
            if epoch < seen:
                return size
        return self.schedule[-1][0]


def augment(
    batch: torch.Tensor,
    size: int,
    cfg: TrainConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    gen: torch.Generator,
    clean_copy: bool = False,
) -> torch.Tensor:
    """Random flip/rotate/scale/shift, resize to ``size``, jitter, erase, normalise.

    With ``clean_copy`` the result has two channels: the augmented face, and the same face
    without the photo-path degradations (every other draw shared).

    All in one batched ``grid_sample``; with no randomness (identity theta,
    size 48) it reduces to :func:`inference.serve.preprocess.faces_to_batch`. Every random
    draw comes from ``gen`` on ``gen``'s device (the batch's), so a GPU run never
    waits on the host for augmentation.
    """
    b = batch.shape[0]
    dev = gen.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    x = batch.unsqueeze(1).float().div_(255.0)
    angle = (rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
    zoom = cfg.scale[0] + rand(b) * (cfg.scale[1] - cfg.scale[0])
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0)
    shift = (rand(b, 2) * 2 - 1) * cfg.translate * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
            torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    clean = x
    x = degrade(x, cfg.photo_p, gen)
    if clean_copy:
        x = torch.cat([x, clean], dim=1)
    if cfg.jitter > 0:
        contrast = 1 + (rand(b, 1, 1, 1) * 2 - 1) * cfg.jitter
        bright = (rand(b, 1, 1, 1) * 2 - 1) * cfg.jitter * 0.5
        mu = x.mean(dim=(2, 3), keepdim=True)
        x = ((x - mu) * contrast + mu + bright).clamp_(0, 1)
    x = normalize(x, mean, std)
    if cfg.erase_p > 0:
        area = 0.02 + rand(b) * 0.13
        aspect = torch.exp((rand(b) * 2 - 1) * math.log(3))
        h = (torch.sqrt(area * aspect) * size).clamp(1, size)
        w = (torch.sqrt(area / aspect) * size).clamp(1, size)
        top = rand(b) * (size - h)
        left = rand(b) * (size - w)
        rows = torch.arange(size, device=dev).view(1, size, 1)
        cols = torch.arange(size, device=dev).view(1, 1, size)
        mask = (
            (rows >= top.view(-1, 1, 1))
            & (rows < (top + h).view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1))
            & (cols < (left + w).view(-1, 1, 1))
            & (rand(b, 1, 1) < cfg.erase_p)
        )
        noise = torch.randn(b, size, size, generator=gen, device=dev)
        x = torch.where(mask.unsqueeze(1), noise.unsqueeze(1), x)
    return x.contiguous(memory_format=torch.channels_last)


def mix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, p: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mixup / CutMix with the next face in the batch; (images, soft targets).

    Each face is mixed with probability ``p``: half of those by mixup (pixels blended,
    weight λ), half by CutMix (a box of area 1 - λ pasted from the partner, λ then
    recomputed from the pixels actually kept), λ ~ Uniform(0, 1) = Beta(1, 1), the
    CutMix paper's default. The target is λ·onehot(y) + (1 - λ)·onehot(partner's y).
    Every draw is a tensor on ``gen``'s device: no host sync on a GPU. The batch is
    already a random permutation, so "the next face" is a random partner.
    """
    b, _, h, w = x.shape
    dev = gen.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    u, lam = rand(b), rand(b)
    cut, blend = u < p / 2, (u >= p / 2) & (u < p)
    x2, y2 = x.roll(1, 0), y.roll(1, 0)
    side = torch.sqrt(1 - lam)
    cy, cx = rand(b) * h, rand(b) * w
    rows = torch.arange(h, device=dev).view(1, h, 1) + 0.5
    cols = torch.arange(w, device=dev).view(1, 1, w) + 0.5
    box = (
        (rows >= (cy - side * h / 2).view(-1, 1, 1))
        & (rows < (cy + side * h / 2).view(-1, 1, 1))
        & (cols >= (cx - side * w / 2).view(-1, 1, 1))
        & (cols < (cx + side * w / 2).view(-1, 1, 1))
        & cut.view(-1, 1, 1)
    ).unsqueeze(1)
    kept = 1 - box.float().mean(dim=(1, 2, 3))
    lam = torch.where(blend, lam, kept)  # kept == 1 where the face is not cut
    wb = torch.where(blend, lam, torch.ones_like(lam)).view(-1, 1, 1, 1)
    out = torch.where(box, x2, x * wb + x2 * (1 - wb))
    target = lam.unsqueeze(1) * F.one_hot(y, num_classes) + (1 - lam).unsqueeze(1) * F.one_hot(
        y2, num_classes
    )
    return out.contiguous(memory_format=torch.channels_last), target


class Ema:
    """Exponential moving average of a model's weights and float buffers (BatchNorm statistics).

    One ``_foreach_lerp_`` over the float tensors a step. torch's ``AveragedModel`` does the
    same maths but walks every tensor in Python each step and also averages the integer
    BatchNorm counters; the two were not timed against each other. ``model`` is the
    averaged copy, in eval mode: validate and export it.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = [
            (e, m)
            for e, m in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
            if e.is_floating_point()
        ]
        self._avg = [e for e, _ in pairs]
        self._live = [m for _, m in pairs]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._avg, self._live, 1.0 - self.decay)


def training_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    criterion: nn.Module,
    faces: torch.Tensor,
    labels: torch.Tensor,
    size: int,
    cfg: TrainConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    gen: torch.Generator,
    ema: Ema | None = None,
    teachers: Sequence[nn.Module] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (and mix, if ``cfg.mix_p``) one batch of uint8 faces, step, update the EMA.

    With ``teachers``, the target becomes (1 - cfg.distill) x the usual target + cfg.distill x
    the teachers' mean probabilities on the same augmented faces (cross-entropy is linear in
    its target, so that is the weighted sum of the label loss and the distillation loss);
    with ``cfg.teacher_view == "clean"`` the teachers see those faces before the photo-path
    degradations.
    The whole step the training loop runs, so a benchmark that times it times the real
    thing. Returns (loss, logits), detached, never synced.
    """
    clean_view = bool(teachers) and cfg.teacher_view == "clean"
    x = augment(faces, size, cfg, mean, std, gen, clean_copy=clean_view)
    target: torch.Tensor = labels
    if cfg.mix_p > 0:  # per pixel and channel-blind: both views get the same mixing
        x, target = mix(x, labels, len(FER2013_CLASSES), cfg.mix_p, gen)
    seen = x
    if clean_view:
        x, seen = (v.contiguous(memory_format=torch.channels_last) for v in (x[:, :1], x[:, 1:]))
    if teachers:
        soft = teacher_probs(teachers, seen, cfg.bf16)
        hard = target if target.is_floating_point() else F.one_hot(target, soft.shape[1]).float()
        target = (1 - cfg.distill) * hard + cfg.distill * soft
    out = train_step(model, opt, criterion, x, target, cfg.bf16)
    if ema is not None:
        ema.update()
    return out


@torch.no_grad()
def teacher_probs(teachers: Sequence[nn.Module], x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The teachers' softmax probabilities on ``x``, averaged (float32, (B, classes))."""
    total = None
    for t in teachers:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            p = torch.softmax(t(x).float(), dim=1)
        total = p if total is None else total + p
    assert total is not None
    return total / len(teachers)


def load_teachers(dirs: Sequence[str], dev: torch.device) -> list[nn.Module]:
    """Exported model directories as frozen eval-mode networks on ``dev``."""
    nets = []
    for d in dirs:
        net, _ = load_model(Path(d))
        nets.append(net.eval().requires_grad_(False).to(dev).to(memory_format=torch.channels_last))
    return nets


def _subset(data: FaceSet, limit: int | None, seed: int) -> FaceSet:
    if limit is None or limit >= data.images.shape[0]:
        return data
    idx = torch.randperm(data.images.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
    return FaceSet(data.images[idx], data.labels[idx], data.classes, tuple(data.paths[i] for i in idx))


def norm_stats(train_set: FaceSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The training set's grey mean and std (rounded; stored in the manifest)."""
    pixels = train_set.images.float().div(255.0)
    return (round(pixels.mean().item(), 4),), (round(pixels.std().item(), 4),)


def load_sets(cfg: TrainConfig) -> tuple[FaceSet, FaceSet]:
    """The training and validation faces a config names (with its ``limit`` applied)."""
    train_set = _subset(load_faces(Path(cfg.data)), cfg.limit, cfg.seed)
    val_set = _subset(load_faces(Path(cfg.val)), cfg.limit, cfg.seed)
    return train_set, val_set


def write_weights(model: nn.Module, out_dir: Path) -> Path:
    """Write the network's state as fp16 safetensors (``out_dir/model.safetensors``)."""
    weights = out_dir / "model.safetensors"
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(weights))
    return weights


def export_model(
    model: nn.Module,
    out_dir: Path,
    cfg: TrainConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    val_accuracy: float,
) -> ModelManifest:
    """Write fp16 safetensors weights and their manifest into ``out_dir``."""
    weights = write_weights(model, out_dir)
    cam_size = cfg.eval_size
    for _ in range(3):  # stem max-pool, layer2 and layer3 each halve the map
        cam_size = (cam_size + 1) // 2
    manifest = ModelManifest(
        stem=STEM_FER,
        classes=FER2013_CLASSES,
        input_size=cfg.eval_size,
        in_channels=1,
        mean=mean,
        std=std,
        target_layer=TARGET_LAYER,
        cam_size=cam_size,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        train_command=cfg.command,
        data=f"FER2013 Training ({cfg.data}), selected on PublicTest ({cfg.val})",
        val_accuracy=round(val_accuracy, 4),
    )
    manifest.dump(out_dir / MANIFEST_FILE)
    return manifest


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    criterion: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step under autocast on ``x``'s device; (loss, logits), detached, never synced."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
        loss = criterion(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(
    cfg: TrainConfig,
    resume: bool = True,
    keep_epochs: bool = False,
    device: str = "cpu",
    save_every: int = 1,
) -> ModelManifest:
    """Run (or resume) training; return the manifest of the best-on-val export.

    With ``keep_epochs`` every epoch's weights are also kept in ``out_dir/epochs/`` for
    ``moodring average``. ``device`` (``cpu``, ``cuda``, ``auto``) and ``save_every``
    (write the resumable checkpoint every N epochs; the last epoch always) don't change
    what is learnt, so they are not part of the config. On a GPU the whole dataset,
    the augmentation and its random generator live on the device.
    """
    torch.set_num_threads(cfg.threads)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif cfg.bf16 and not cpu_has_native_bf16():
        log.warning("this CPU has no bf16 in hardware: bf16 autocast is emulated, ~10x slower; try --no-bf16")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set = load_sets(cfg)
    mean, std = norm_stats(train_set)
    images, labels = train_set.images.to(dev), train_set.labels.to(dev)

    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        # Warm start: a second one-cycle run continuing from an exported model directory.
        model, _ = load_model(Path(cfg.init_from))
        model.train()
        log.info("initialised weights from %s", cfg.init_from)
    else:
        model = build_resnet50(len(FER2013_CLASSES))
    model = model.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    n = train_set.images.shape[0]
    steps_per_epoch = n // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr,
        total_steps=steps_per_epoch * cfg.epochs,
        pct_start=cfg.warmup_frac,
        div_factor=10.0,
        final_div_factor=1e3,
    )
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    ema = Ema(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    teachers = load_teachers(cfg.teachers, dev)
    if teachers:
        log.info("distilling from %d teachers (weight %.2f): %s", len(teachers), cfg.distill, cfg.teachers)
    start_epoch, best_acc = 0, -1.0
    ckpt_path = out_dir / "last.pt"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if _plain(config_from_checkpoint(ckpt["config"])) != _plain(cfg):
            raise click.UsageError(f"{ckpt_path} was made with another config; use a new --out-dir")
        made_on = ckpt.get("device_type", "cpu")  # checkpoints from before --device are CPU ones
        if made_on != dev.type:
            raise click.UsageError(f"{ckpt_path} was made on {made_on}; resume it there (--device)")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        gen.set_state(ckpt["gen"])
        if ema is not None:
            ema.model.load_state_dict(ckpt["ema"])
        start_epoch, best_acc = ckpt["epoch"] + 1, ckpt["best_acc"]
        log.info("resumed from %s at epoch %d (best val %.4f)", ckpt_path, start_epoch + 1, best_acc)

    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def val_accuracy(m: nn.Module) -> float:
        probs = predict_probs(m, val_set.images, size=cfg.eval_size, mean=mean, std=std, bf16=cfg.bf16)
        return float((probs.argmax(1) == val_set.labels.numpy()).mean())

    show_every = max(1, steps_per_epoch // 20)  # progress-bar numbers cost a device sync
    for epoch in range(start_epoch, cfg.epochs):
        size = cfg.size_at(epoch)
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        seen = 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs} @{size}px",
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 60.0,
            leave=False,
        )
        for step in bar:
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            y = labels[idx]
            loss, logits = training_step(
                model, opt, criterion, images[idx], y, size, cfg, mean, std, gen, ema, teachers
            )
            sched.step()
            loss_sum += loss * y.shape[0]
            correct += (logits.argmax(1) == y).sum()
            seen += y.shape[0]
            if step % show_every == 0:
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}", refresh=False
                )
        bar.close()
        train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
        train_secs = time.perf_counter() - t0

        # With an EMA, the averaged weights are what is selected and exported; the live
        # weights' accuracy is logged beside them (raw=) so the EMA's effect is on record.
        selected = ema.model if ema is not None else model
        val_acc = val_accuracy(selected)
        raw = f" raw_val_acc={val_accuracy(model):.4f}" if ema is not None else ""
        improved = val_acc > best_acc
        if improved:
            best_acc = val_acc
            torch.save(_cpu_state(selected), out_dir / "best.pt")
        if keep_epochs:
            (out_dir / "epochs").mkdir(exist_ok=True)
            torch.save(_cpu_state(selected), epoch_path(out_dir, epoch + 1))
        log.info(
            "epoch %d/%d size=%d loss=%.4f train_acc=%.4f val_acc=%.4f%s%s lr=%.5f train_s=%.1f total_s=%.1f",
            epoch + 1,
            cfg.epochs,
            size,
            train_loss,
            train_acc,
            val_acc,
            " *" if improved else "",
            raw,
            sched.get_last_lr()[0],
            train_secs,
            time.perf_counter() - t0,
        )
        if (epoch + 1) % save_every == 0 or epoch + 1 == cfg.epochs:
            torch.save(
                {
                    "model": _cpu_state(model),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "gen": gen.get_state(),
                    **({"ema": _cpu_state(ema.model)} if ema is not None else {}),
                    "epoch": epoch,
                    "best_acc": best_acc,
                    "config": _plain(cfg),
                    "device_type": dev.type,
                },
                ckpt_path.with_suffix(".tmp"),
            )
            ckpt_path.with_suffix(".tmp").replace(ckpt_path)

    model.load_state_dict(torch.load(out_dir / "best.pt", map_location="cpu", weights_only=True))
    manifest = export_model(model, out_dir, cfg, mean, std, best_acc)
    log.info("exported %s (val %.4f) to %s", manifest.weights_file, best_acc, out_dir)
    return manifest


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def subcommand_args(argv: list[str] | None = None) -> list[str]:
    """The options after the sub-command (``moodring train …`` or ``python -m inference.training.train …``).

    Judged by the program's own name: a checkout whose path holds "moodring"
    (``/src/moodring/inference/training/train.py``) is still the module form.
    """
    argv = sys.argv if argv is None else argv
    return argv[2:] if Path(argv[0]).name == "moodring" else argv[1:]


def epoch_path(out_dir: Path, epoch: int) -> Path:
    """Where ``--keep-epochs`` puts the weights after (1-based) ``epoch``."""
    return out_dir / "epochs" / f"epoch-{epoch:03d}.pt"


def config_from_checkpoint(plain: dict[str, object], command: str = "") -> TrainConfig:
    """Rebuild the :class:`TrainConfig` stored in a checkpoint by :func:`_plain`."""
    values = dict(plain)
    values["schedule"] = tuple((int(a), int(b)) for a, b in values["schedule"])  # type: ignore[attr-defined]
    values["scale"] = tuple(values["scale"])  # type: ignore[arg-type]
    values["teachers"] = tuple(values.get("teachers", ()))  # type: ignore[arg-type]
    # Checkpoints from before a field existed get its default, which is what they ran with.
    return TrainConfig(**values, command=command)  # type: ignore[arg-type]


def _plain(cfg: TrainConfig) -> dict[str, object]:
    """Config as JSON-like primitives (checkpoint-safe, compares equal across resumes)."""
    plain = asdict(cfg)
    plain.pop("command")
    plain["schedule"] = [list(s) for s in cfg.schedule]
    plain["scale"] = list(cfg.scale)
    plain["teachers"] = list(cfg.teachers)
    return plain


def _parse_schedule(text: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple((int(a), int(b)) for a, b in (part.split(":") for part in text.split(",")))
    except ValueError as exc:
        raise click.BadParameter("use SIZE:EPOCHS[,SIZE:EPOCHS...], e.g. 32:10,40:7,48:5") from exc
    if not pairs or any(s < 16 or e < 1 for s, e in pairs):
        raise click.BadParameter("sizes must be >= 16 and epochs >= 1")
    return pairs


@click.command("train")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=Path("../shared/datasets/fer2013/train"),
    show_default=True,
    help="ImageFolder tree of 48x48 training faces.",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    default=Path("../shared/datasets/fer2013/val"),
    show_default=True,
    help="ImageFolder tree used for model selection.",
)
@click.option(
    "--out-dir", type=click.Path(path_type=Path), default=Path("runs/fer-resnet50"), show_default=True
)
@click.option(
    "--schedule",
    default="32:16,40:10,48:10",
    show_default=True,
    help="Progressive resizing: SIZE:EPOCHS pairs, run in order.",
)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Peak one-cycle learning rate (AdamW).")
@click.option("--threads", default=2, show_default=True, help="torch intra-op threads.")
@click.option("--limit", type=int, default=None, help="Use only N images of each split (smoke runs).")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-bf16", is_flag=True, help="Train in fp32 instead of bf16 autocast.")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint in --out-dir.")
@click.option("--keep-epochs", is_flag=True, help="Also keep every epoch's weights (for `moodring average`).")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, cuda, cuda:N or auto (a GPU when torch sees one).",
)
@click.option(
    "--save-every", default=1, show_default=True, help="Write the resumable checkpoint every N epochs."
)
@click.option(
    "--mix",
    "mix_p",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of faces mixed with another (half mixup, half CutMix; soft targets). 0 = off.",
)
@click.option(
    "--photo-aug",
    "photo_p",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Probability of each photo-path degradation (resolution, blur, JPEG, exposure). 0 = off.",
)
@click.option(
    "--teacher",
    "teachers",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An exported model directory to distil from (repeat for an ensemble; their probabilities "
    "are averaged).",
)
@click.option(
    "--distill",
    type=click.FloatRange(0.0, 1.0),
    default=0.7,
    show_default=True,
    help="With --teacher: the teachers' share of the target (the labels keep the rest).",
)
@click.option(
    "--teacher-view",
    type=click.Choice(["same", "clean"]),
    default="same",
    show_default=True,
    help="With --teacher: what the teachers see, the student's input or the same face before the "
    "--photo-aug degradations.",
)
@click.option(
    "--ema",
    "ema_decay",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Keep an exponential moving average of the weights (e.g. 0.999) and select/export it. 0 = off.",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Start from an exported model directory (manifest.json + weights) instead of random weights.",
)
def train_command(
    data: Path,
    val: Path,
    out_dir: Path,
    schedule: str,
    batch_size: int,
    lr: float,
    threads: int,
    limit: int | None,
    seed: int,
    no_bf16: bool,
    fresh: bool,
    keep_epochs: bool,
    device: str,
    save_every: int,
    mix_p: float,
    photo_p: float,
    teachers: tuple[Path, ...],
    distill: float,
    teacher_view: Literal["same", "clean"],
    ema_decay: float,
    init_from: Path | None,
) -> None:
    """Train the emotion model on FER2013 (resumable; logs one line per epoch)."""
    from inference.api.logsetup import configure_logging

    configure_logging()
    cfg = TrainConfig(
        data=str(data),
        val=str(val),
        out_dir=str(out_dir),
        schedule=_parse_schedule(schedule),
        batch_size=batch_size,
        lr=lr,
        threads=threads,
        limit=limit,
        seed=seed,
        bf16=not no_bf16,
        mix_p=mix_p,
        photo_p=photo_p,
        ema_decay=ema_decay,
        init_from=str(init_from) if init_from else None,
        teachers=tuple(str(t) for t in teachers),
        distill=distill if teachers else 0.0,
        teacher_view=teacher_view if teachers else "same",
        command="moodring train " + shlex.join(subcommand_args()),
    )
    log.info("config %s", _plain(cfg))
    train(cfg, resume=not fresh, keep_epochs=keep_epochs, device=device, save_every=max(1, save_every))


def main() -> None:
    """Entry point for ``python -m inference.training.train``."""
    train_command(prog_name="python -m inference.training.train")


if __name__ == "__main__":
    main()
