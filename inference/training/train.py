"""Train the FER2013 ResNet50 on a CPU or a GPU (bf16 autocast where it pays, channels_last), resumable.

Run ``moodring train`` or ``python -m inference.training.train_cli``; see ``--help``. The
config is :mod:`~inference.training.config`, the augmentation :mod:`~inference.training.augment`,
one step :mod:`~inference.training.step`, the export :mod:`~inference.training.export`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
import torch
from torch import nn
from tqdm import tqdm

from inference.api.manifest import ModelManifest
from inference.serve.checkpoint import load_model
from inference.serve.model import build_resnet50, param_groups
from inference.serve.precision import cpu_has_native_bf16
from inference.training.config import TrainConfig, config_from_checkpoint, plain_config
from inference.training.data import FER2013_CLASSES, FaceSet, load_faces
from inference.training.export import export_model
from inference.training.predict import predict_probs
from inference.training.step import Ema, load_teachers, training_step

log = logging.getLogger(__name__)


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
        if plain_config(config_from_checkpoint(ckpt["config"])) != plain_config(cfg):
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
                    "config": plain_config(cfg),
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


def epoch_path(out_dir: Path, epoch: int) -> Path:
    """Where ``--keep-epochs`` puts the weights after (1-based) ``epoch``."""
    return out_dir / "epochs" / f"epoch-{epoch:03d}.pt"
