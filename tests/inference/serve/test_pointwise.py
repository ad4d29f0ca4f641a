"""1×1 convolutions as matrix products: the same function and gradient, only where the backward runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from inference.serve.checkpoint import load_model
from inference.serve.explain import CamClassifier
from inference.serve.model import PointwiseAsLinear, pointwise_as_linear


@pytest.mark.parametrize("stride", [1, 2])
def test_a_pointwise_conv_as_a_matrix_product_is_the_same_function(stride: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, kernel_size=1, stride=stride, bias=True)
    x = torch.randn(3, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = conv(a), PointwiseAsLinear(conv)(b)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    want.square().sum().backward()
    got.square().sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)


def test_only_plain_pointwise_convs_are_replaced() -> None:
    block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1, groups=2))
    pointwise_as_linear(block)
    assert isinstance(block[0], PointwiseAsLinear)
    assert isinstance(block[1], nn.Conv2d) and isinstance(block[2], nn.Conv2d)


def test_bf16_on_the_cpu_swaps_only_what_runs_after_the_grad_cam_layer(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    x = torch.randn(2, 1, manifest.input_size, manifest.input_size)
    with CamClassifier(model, "layer3", bf16=True) as cam:
        swapped = {n.split(".")[0] for n, m in cam.model.named_modules() if isinstance(m, PointwiseAsLinear)}
        assert swapped == {"layer4"}
        fast = cam(x)
    with CamClassifier(model, "layer3", bf16=False) as plain:
        assert not any(isinstance(m, PointwiseAsLinear) for m in plain.model.modules())
        ref = plain(x)
    assert (fast.probs.argmax(1) == ref.probs.argmax(1)).all()
    assert abs(fast.probs - ref.probs).max() < 0.05  # bf16 against float32, the same network
