"""The training augmentation on uint8 faces (on the CPU or the GPU): geometry, the photo-path
degradations, erasing, normalising; and per-sample mixup / CutMix."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from inference.serve.preprocess import normalize
from inference.training.config import TrainConfig
from inference.training.degrade import degrade


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
