"""Where the network runs (``MOODRING_DEVICE=auto|cpu|cuda``) and in which autocast dtype.

CPU: bf16 autocast exactly where the CPU has bf16 in hardware (:mod:`inference.serve.precision`).
CUDA: bf16 where the GPU has it (Ampere and newer, e.g. an H200), else float16; ``bf16=False``
keeps float32. The choice is made once, when the predictor is built; nothing here runs at
import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import torch

from inference.serve.precision import resolve_bf16

log = logging.getLogger(__name__)

DeviceName = Literal["auto", "cpu", "cuda"]


class DeviceUnavailable(RuntimeError):
    """``cuda`` was asked for on a machine where PyTorch sees no CUDA GPU."""


def resolve_device(
    requested: DeviceName = "auto", cuda_available: Callable[[], bool] = torch.cuda.is_available
) -> torch.device:
    """``auto``: the GPU when PyTorch sees one, else the CPU; ``cuda`` without a GPU is an error."""
    has_cuda = cuda_available()
    if requested == "cuda" and not has_cuda:
        raise DeviceUnavailable("MOODRING_DEVICE=cuda but PyTorch sees no CUDA GPU")
    device = torch.device("cuda" if requested != "cpu" and has_cuda else "cpu")
    log.info("network on %s (asked: %s)", device, requested)
    return device


def autocast_dtype(
    device: torch.device,
    bf16: bool | None = None,
    cuda_bf16: Callable[[], bool] | None = None,
) -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for plain float32."""
    if device.type == "cuda":
        if bf16 is False:
            return None
        has_bf16 = (cuda_bf16 or torch.cuda.is_bf16_supported)()
        return torch.bfloat16 if has_bf16 else torch.float16
    return torch.bfloat16 if resolve_bf16(bf16) else None


def precision_name(dtype: torch.dtype | None) -> str:
    """How an autocast dtype (None: none) is named in settings, logs and metrics."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def use_threads(n: int) -> None:
    """Run this process's maths on ``n`` threads: torch's, and numpy's BLAS too.

    numpy's OpenBLAS keeps a pool of its own, one thread per core, whose threads spin while they
    wait: in a one-thread worker beside another on 2 cores, the community adapter's projection
    (a small matrix product per batch) made both workers fight over the cores, and 2 workers at 16
    submitters gave 21–44 selfies/s instead of 53 (docs/performance.md, "Speed IV").
    """
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
