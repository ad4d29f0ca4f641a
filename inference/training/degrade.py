"""Training-time degradations that mimic the path a real photo takes to the network (issue 19).

A served face is cut from a phone photo: a JPEG, often re-compressed, shrunk from a larger face
or enlarged from a small one, under any exposure. FER2013 faces are 48 px web crops with their
own (different) history. Each degradation here is applied to a face with probability ``p``, on
the batch's device, with every random draw from ``gen`` (no host sync on a GPU):

* **resolution**: shrink to 1/2, 5/8 or 3/4 of the side (area) and enlarge back (bilinear);
* **blur**: a Gaussian of sigma 0.6 or 1.0 px;
* **JPEG**: the luma path of baseline JPEG (8x8 DCT, the standard quantisation table scaled
  to a quality in 15..70, rounding, inverse DCT), so block and ringing artefacts are the
  real ones; :func:`jpeg_luma` matches Pillow's encoder closely (tests);
* **exposure**: gamma exp(U(-0.4, 0.4)).

Colour-to-grey conversions of different weights can't be simulated: FER2013 is grey already.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU T.81 Annex K, table K.1: the luminance quantisation table (quality 50)
_LUMA_Q50 = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)

SHRINKS = (0.5, 0.625, 0.75)
SIGMAS = (0.6, 1.0)
QUALITY = (15.0, 70.0)
GAMMA_LOG = 0.4


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix (rows: frequencies)."""
    k = torch.arange(8, device=device, dtype=torch.float32).view(-1, 1)
    n = torch.arange(8, device=device, dtype=torch.float32).view(1, -1)
    m = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def quant_tables(quality: torch.Tensor) -> torch.Tensor:
    """IJG's scaling of the luma table for each quality in ``quality`` (B,): (B, 8, 8)."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(-1, 1, 1)
    base = torch.tensor(_LUMA_Q50, dtype=torch.float32, device=quality.device)
    return torch.floor((base * scale + 50) / 100).clamp(1, 255)


def jpeg_luma(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """``x`` (B, 1, H, W) in [0, 1], H and W multiples of 8, through JPEG's luma quantisation."""
    b, c, h, w = x.shape
    d = _dct_matrix(x.device)
    blocks = (x * 255 - 128).reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = d @ blocks @ d.T
    q = quant_tables(quality).view(b, 1, 1, 1, 8, 8)
    coef = torch.round(coef / q) * q
    out = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)
    return ((out + 128).round() / 255).clamp(0, 1)


def _gaussian(sigma: float, device: torch.device) -> torch.Tensor:
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = _gaussian(sigma, x.device)
    r = (len(k) - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _pick(options: list[torch.Tensor], choice: torch.Tensor) -> torch.Tensor:
    """Per face, the option ``choice`` names (options: each (B, 1, H, W); choice: (B,) ints)."""
    stacked = torch.stack(options)  # (K, B, 1, H, W)
    idx = choice.view(1, -1, 1, 1, 1).expand(1, *stacked.shape[1:])
    return stacked.gather(0, idx).squeeze(0)


def degrade(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Each of the four degradations applied to each face of ``x`` (B, 1, S, S) in [0, 1] with
    probability ``p``; the side S must be a multiple of 8 (32, 40, 48)."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    dev = gen.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=dev)

    def chosen() -> torch.Tensor:
        return (rand(b) < p).view(-1, 1, 1, 1)

    def which(n: int) -> torch.Tensor:
        return (rand(b) * n).long().clamp(max=n - 1)

    # resolution: down (area) and back up (bilinear)
    small = [
        F.interpolate(
            F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area"),
            size=(h, w),
            mode="bilinear",
            align_corners=False,
        )
        for s in SHRINKS
    ]
    x = torch.where(chosen(), _pick(small, which(len(SHRINKS))), x)
    # blur
    x = torch.where(chosen(), _pick([_blur(x, s) for s in SIGMAS], which(len(SIGMAS))), x)
    # JPEG at a random quality
    quality = QUALITY[0] + rand(b) * (QUALITY[1] - QUALITY[0])
    x = torch.where(chosen(), jpeg_luma(x, quality), x)
    # exposure
    gamma = torch.exp((rand(b) * 2 - 1) * GAMMA_LOG).view(-1, 1, 1, 1)
    return torch.where(chosen(), x.clamp(1e-6, 1) ** gamma, x)
