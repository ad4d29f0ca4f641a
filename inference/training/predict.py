"""The network's probabilities for a stack of faces, in batches, with test-time views (flip, ten
crops); the one path evaluation, calibration, averaging and the benchmarks share."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.api.manifest import ModelManifest

log = logging.getLogger(__name__)

Tta = Literal["none", "flip", "ten"]
Adapt = Callable[[np.ndarray, np.ndarray], np.ndarray]
T = TypeVar("T")


def progress_bar(items: Iterable[T], label: str | None, **kw: Any) -> Iterable[T]:
    """``items`` with a tqdm progress bar on stderr when ``label`` is given and stderr is a
    terminal; as they are otherwise (CI, pipes, ``--json`` runs read by scripts, tests)."""
    if label is None or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    bar: Iterable[T] = tqdm(items, desc=label, file=sys.stderr, leave=False, dynamic_ncols=True, **kw)
    return bar


def _views(x: torch.Tensor, tta: Tta) -> list[torch.Tensor]:
    """Test-time views of a normalised batch: identity, + flip, or 5 shifted crops x flip."""
    if tta == "none":
        return [x]
    if tta == "flip":
        return [x, x.flip(3)]
    size = x.shape[-1]
    pad = max(1, size // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = [(pad, pad), (0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)]
    crops = [padded[..., r : r + size, c : c + size] for r, c in offsets]
    return crops + [c.flip(3) for c in crops]


@torch.inference_mode()
def predict_probs(
    model: nn.Module,
    faces: torch.Tensor | Sequence[np.ndarray],
    manifest: ModelManifest | None = None,
    *,
    size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    tta: Tta = "none",
    batch_size: int = 256,
    bf16: bool = True,
    temperature: float | None = None,
    progress: str | None = None,
    adapt: Adapt | None = None,
) -> np.ndarray:
    """Softmax probabilities (N, classes) for grey uint8 face crops, averaged over TTA views.

    ``adapt`` (a community adapter: (probs, pooled features) -> probs) adjusts each view first.

    Each view's logits are divided by ``temperature`` (default: the manifest's, else 1)
    before the softmax; that never changes a single view's prediction, only its confidence
    (averaged over TTA views it can flip a near-tie).
    ``progress`` names a progress bar drawn on stderr, only when stderr is a terminal.
    """
    from inference.serve.preprocess import faces_to_batch

    size = size or (manifest.input_size if manifest else 48)
    mean = mean or (manifest.mean if manifest else (0.5,))
    std = std or (manifest.std if manifest else (0.25,))
    if temperature is None:
        temperature = manifest.temperature if manifest else 1.0
    model.eval()
    # run where the model lives (the CPU when served); a model without weights runs on the CPU
    dev = next(iter(model.parameters()), torch.empty(0)).device
    out = []
    n = len(faces)
    pooled: list[torch.Tensor] = []
    hook = None
    if adapt is not None:
        head = model.get_submodule("fc")
        hook = head.register_forward_pre_hook(lambda _m, args: pooled.append(args[0].detach().float()))
    try:
        for start in progress_bar(range(0, n, batch_size), progress, unit_scale=batch_size, unit="face"):
            x = faces_to_batch(faces[start : start + batch_size], size, mean, std).to(dev)
            acc = None
            views = _views(x, tta)
            for view in views:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(view.contiguous(memory_format=torch.channels_last)).float()
                p = torch.softmax(logits / temperature, dim=1)
                if adapt is not None:
                    got = adapt(p.cpu().numpy(), pooled.pop().cpu().numpy())
                    p = torch.from_numpy(got).float().to(p.device)
                acc = p if acc is None else acc + p
            assert acc is not None
            out.append((acc / len(views)).cpu().numpy())
    finally:
        if hook is not None:
            hook.remove()
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
