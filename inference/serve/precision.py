"""Whether to run the network under bf16 autocast on this CPU.

bf16 autocast pays only where the CPU has bf16 arithmetic (AVX512-BF16 or AMX, e.g.
Intel Sapphire Rapids, AMD Zen 4): measured there, ResNet50 training at 48 px cost
4.5 ms/image. Elsewhere PyTorch emulates it and it is an order of magnitude slower
than float32: on a 2-core AVX2-only AMD EPYC a training step of 32 faces took 29 s
in bf16 against 2.3 s in float32. So the default (``None``) asks the CPU.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


def resolve_bf16(requested: bool | None) -> bool:
    """``requested`` if set, else bf16 exactly where the CPU has it natively."""
    if requested is not None:
        return requested
    native = cpu_has_native_bf16()
    log.debug("bf16 autocast %s (CPU bf16 in hardware: %s)", "on" if native else "off", native)
    return native
