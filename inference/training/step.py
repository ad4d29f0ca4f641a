"""One training step as the loop runs it (augment, mix, distil, optimise, EMA), and the pieces
a benchmark or the GPU script times on their own."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inference.serve.checkpoint import load_model
from inference.training.augment import augment, mix
from inference.training.config import TrainConfig
from inference.training.data import FER2013_CLASSES


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
