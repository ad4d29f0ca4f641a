"""bf16 autocast is chosen from what the CPU computes in hardware unless set."""

from __future__ import annotations

import pytest
import torch

from inference.serve.precision import cpu_has_native_bf16, resolve_bf16
from inference.serve.settings import EngineSettings


def test_an_explicit_choice_wins() -> None:
    assert resolve_bf16(True) is True
    assert resolve_bf16(False) is False


def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_bf16(None) is cpu_has_native_bf16()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_bf16(None) is False  # AVX2-only: emulated bf16 is ~10x slower, use float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_bf16(None) is True


def test_settings_leave_it_to_the_cpu_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOODRING_BF16", raising=False)
    assert EngineSettings().bf16 is None
    monkeypatch.setenv("MOODRING_BF16", "false")
    assert EngineSettings().bf16 is False
