"""Tensor preprocessing shared by training, evaluation and serving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalise a float batch in [0, 1] of shape (B, C, H, W) per channel."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def faces_to_batch(
    faces: torch.Tensor | Sequence[np.ndarray],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Turn grey uint8 face crops into a normalised model batch of (B, 1, size, size).

    Crops of another size are resized bilinearly (antialiased). This is the only
    path from pixels to network input, used by training, evaluation and serving.
    """
    if isinstance(faces, torch.Tensor):
        x = _resize(faces.unsqueeze(1) if faces.ndim == 3 else faces, size)
    else:
        x = torch.cat(
            [_resize(torch.from_numpy(np.array(f, dtype=np.uint8))[None, None], size) for f in faces]
        )
    return normalize(x, mean, std).contiguous(memory_format=torch.channels_last)


def _resize(batch: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 1, H, W) → float in [0, 1] at (size, size)."""
    x = batch.float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x
