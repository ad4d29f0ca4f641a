"""Convolutions with weights packed once for oneDNN: the same function and input gradient as the
convolution they replace, at any batch and map size, and the same Grad-CAM reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import inference.serve.explain as explain
from inference.serve.checkpoint import load_model
from inference.serve.explain import CamClassifier
from inference.serve.packed import PackedConv2d, pack_convolutions


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (7, 2, 3)]
)
def test_a_packed_convolution_is_the_same_function_and_input_gradient(
    dtype: torch.dtype, kernel: int, stride: int, padding: int
) -> None:
    torch.manual_seed(kernel * 10 + stride)
    conv = nn.Conv2d(32, 48, kernel, stride, padding, bias=True)
    packed = PackedConv2d(conv, dtype)
    reference = nn.Conv2d(32, 48, kernel, stride, padding).to(dtype)
    reference.load_state_dict({k: v.to(dtype) for k, v in conv.state_dict().items()})
    reference.requires_grad_(False)
    # packed on the first call's size; later calls at other batch and map sizes use that packing
    for batch, side in ((1, 9), (5, 6), (2, 13)):
        x = torch.randn(batch, 32, side, side).to(dtype).contiguous(memory_format=torch.channels_last)
        a, b = x.clone().requires_grad_(True), x.float().requires_grad_(True)
        want, got = reference(a), packed(b)
        assert got.dtype == dtype and got.shape == want.shape
        torch.testing.assert_close(got.float(), want.float(), rtol=1e-3, atol=1e-3)
        with torch.no_grad():
            torch.testing.assert_close(packed(x).float(), want.float(), rtol=1e-3, atol=1e-3)
        grad = torch.randn_like(want)
        want.backward(grad)
        got.backward(grad.float())
        assert b.grad is not None and a.grad is not None and b.grad.dtype == torch.float32
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(b.grad, a.grad.float(), rtol=tolerance, atol=tolerance)
    assert packed.weight.grad is None  # no weight gradient is ever computed


def test_only_plain_convolutions_are_packed() -> None:
    block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1, groups=2))
    assert pack_convolutions(block, torch.float32) == 2
    assert isinstance(block[0], PackedConv2d) and isinstance(block[1], PackedConv2d)
    assert type(block[2]) is nn.Conv2d


@pytest.mark.parametrize("bf16", [False, True])
def test_a_packed_network_reads_and_explains_as_the_plain_one(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, bf16: bool
) -> None:
    model, manifest = load_model(tiny_model_dir)
    torch.manual_seed(3)
    x = torch.randn(3, 1, manifest.input_size, manifest.input_size)
    with CamClassifier(model, "layer3", bf16=bf16) as fast:
        assert not any(type(m) is nn.Conv2d for m in fast.model.modules())  # every one packed
        got = fast(x)
    monkeypatch.setattr(explain, "packing_available", lambda *_: False)
    with CamClassifier(model, "layer3", bf16=bf16) as plain:
        assert not any(isinstance(m, PackedConv2d) for m in plain.model.modules())
        want = plain(x)
    tolerance = 2e-2 if bf16 else 1e-4
    np.testing.assert_allclose(got.probs, want.probs, atol=tolerance)
    np.testing.assert_allclose(got.maps, want.maps, atol=10 * tolerance)
    assert (got.probs.argmax(1) == want.probs.argmax(1)).all()
