"""What the network runs in: the int8 trunk, bf16 autocast or float32 (``MOODRING_PRECISION``).

int8 (:mod:`inference.serve.quantize`) is served by default only where the model's int8 trunk met
its accuracy rule (``moodring quantize``, recorded in the manifest) and the CPU has the kernels.

bf16 autocast pays only where the CPU has bf16 arithmetic (AVX512-BF16 or AMX, e.g.
Intel Sapphire Rapids, AMD Zen 4): measured there, ResNet50 training at 48 px cost
4.5 ms/image. Elsewhere PyTorch emulates it and it is an order of magnitude slower
than float32: on a 2-core AVX2-only AMD EPYC a training step of 32 faces took 29 s
in bf16 against 2.3 s in float32. So the default (``None``) asks the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from inference.api.errors import ModelError
from inference.api.manifest import ModelManifest, default_model_dir

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


PRECISIONS = ("auto", "int8", "bf16", "fp32")


def resolve_precision(
    requested: str,
    bf16: bool | None,
    device: torch.device,
    has_int8: bool,
    int8_meets_rule: bool,
    kernels: bool,
) -> tuple[str, str]:
    """What a predictor serves, and why (one line for the start-up log).

    ``int8`` (the quantized trunk, :mod:`inference.serve.quantize`) only on a CPU with the kernels
    and a manifest that has the file; ``auto`` takes it only where the manifest also records that
    its measured accuracy met the rule. Otherwise ``bf16`` where the hardware has it (or
    ``MOODRING_BF16`` says so), else ``fp32``.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; use one of {PRECISIONS}")
    if requested in ("bf16", "fp32"):
        return requested, "asked for"
    if requested == "auto" and bf16 is not None:
        return ("bf16" if bf16 else "fp32"), "MOODRING_BF16 is set"
    gpu = device.type != "cpu"
    floating = "bf16" if (bf16 is not False if gpu else resolve_bf16(bf16)) else "fp32"
    if gpu:
        why = "int8 runs on the CPU only" if requested == "int8" else f"{device.type}: float"
        return floating, why
    if not has_int8:
        return floating, "the model has no int8 trunk (moodring quantize)"
    if not kernels:
        return floating, "this CPU/PyTorch lacks the x86 int8 kernels"
    if requested == "auto" and not int8_meets_rule:
        return floating, "the int8 trunk did not meet the accuracy rule (model card)"
    return "int8", "asked for" if requested == "int8" else "the fastest that meets the accuracy rule"


def serving_network(
    model: nn.Module,
    manifest: ModelManifest,
    model_dir: Path | None,
    requested: str,
    bf16: bool | None,
    device: torch.device,
) -> tuple[nn.Module, str, bool | None]:
    """The network to serve, the precision it runs in, and the autocast choice for its float part.

    An int8 trunk that can't be used (missing, altered, the wrong shape) falls back to float with
    a log line saying why: a warning where int8 was asked for."""
    from inference.serve.quantize import int8_kernels, int8_net

    chosen, why = resolve_precision(
        requested, bf16, device, bool(manifest.int8_file), manifest.int8_meets_rule, int8_kernels()
    )
    if chosen == "int8":
        try:
            model = int8_net(model, manifest, model_dir or default_model_dir())
        except ModelError as exc:
            chosen = "bf16" if resolve_bf16(bf16) else "fp32"
            why = f"the int8 trunk can't be used: {exc}"
    if requested == "int8" and chosen != "int8":
        log.warning("precision: int8 was asked for, serving %s instead: %s", chosen, why)
    else:
        log.info("precision: %s (%s)", chosen, why)
    if device.type == "cpu":  # int8's float tail (layer4, head) in bf16 where the CPU has it
        bf16 = chosen == "bf16" or (chosen == "int8" and resolve_bf16(bf16))
    return model, chosen, bf16
