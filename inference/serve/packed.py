"""Convolutions whose weights are packed for oneDNN once, not on every call (CPU serving).

PyTorch's CPU convolution keeps its weight in the plain (out, in, kh, kw) layout and has oneDNN
reorder it into its blocked layout on every call. At a face crop's sizes (``layer4`` works on
2×2 maps) that reorder is most of a convolution's time: a 3×3, 512-channel convolution of one
face took 1.1–1.4 ms plain and 0.15–0.20 ms packed in bf16 on a 2-core Xeon with AMX, forward
and backward alike, with the same numbers to the bit (docs/performance.md, "Speed IV").
:class:`PackedConv2d` computes exactly what the :class:`~torch.nn.Conv2d` it replaces computed,
through ``torch.ops.mkldnn._convolution_pointwise`` with a weight reordered once per input
size; where a gradient is asked for (Grad-CAM's backward through ``layer4``), the gradient of
the input is a transposed convolution with the same weight, packed the same way. No weight
gradient is ever computed: serving weights take none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_MKLDNN: Any = torch.ops.mkldnn


def packing_available(device: torch.device, dtype: torch.dtype | None) -> bool:
    """Whether :class:`PackedConv2d` can serve here: a CPU with oneDNN, in float32 or bf16."""
    return (
        device.type == "cpu"
        and bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
        and dtype in (None, torch.float32, torch.bfloat16)
    )


def _plain(conv: nn.Conv2d) -> bool:
    """What :class:`PackedConv2d` serves: one group, zero padding given in pixels."""
    return conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


class PackedConv2d(nn.Module):
    """A :class:`~torch.nn.Conv2d` (any kernel, stride, padding and dilation; ``groups`` 1, the
    "zeros" padding mode) served with its weight packed for oneDNN, in ``dtype``."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        super().__init__()
        if not _plain(conv):
            raise ValueError("PackedConv2d serves plain convolutions only")
        self.dtype = dtype
        self.weight = conv.weight.detach().to(dtype).contiguous()
        self.bias = None if conv.bias is None else conv.bias.detach().to(dtype).contiguous()
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        # Packed on first use, for that input's size; oneDNN's blocked layout depends on the
        # channels, not on the map's size (measured: the same speed at other sizes, the same
        # numbers), so one packing serves every size. The transposed one per output padding.
        self._forward: torch.Tensor | None = None
        self._backward: dict[tuple[int, ...], torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, stride={self.stride}, padding={self.padding}, {self.dtype}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            out: torch.Tensor = _PackedConvFunction.apply(x, self)
            return out
        return self.run(x.to(self.dtype))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of ``x`` (in ``dtype``), without autograd."""
        packed = self._forward
        if packed is None:
            packed = self._forward = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
                self.weight.to_mkldnn(), self.padding, self.stride, self.dilation, 1, [1, *x.shape[1:]]
            )
        out: torch.Tensor = _MKLDNN._convolution_pointwise(
            x, packed, self.bias, self.padding, self.stride, self.dilation, 1, "none", [], ""
        )
        return out

    def input_gradient(self, grad: torch.Tensor, input_shape: torch.Size) -> torch.Tensor:
        """The gradient of the convolution's input, given its output's: a transposed convolution."""
        grad = grad.to(self.dtype).contiguous(memory_format=torch.channels_last)
        # the rows and columns a strided convolution's output leaves uncovered at the far edge
        out_padding = [
            size - ((g - 1) * s - 2 * p + d * (k - 1) + 1)
            for size, g, s, p, d, k in zip(
                input_shape[2:],
                grad.shape[2:],
                self.stride,
                self.padding,
                self.dilation,
                self.weight.shape[2:],
                strict=True,
            )
        ]
        packed = self._backward.get(tuple(out_padding))
        if packed is None:
            packed = self._backward[tuple(out_padding)] = _MKLDNN._reorder_convolution_transpose_weight(
                self.weight, self.padding, out_padding, self.stride, self.dilation, 1, [1, *grad.shape[1:]]
            )
        out: torch.Tensor = _MKLDNN._convolution_transpose_pointwise(
            grad, packed, None, self.padding, out_padding, self.stride, self.dilation, 1, "none", [], ""
        )
        return out


class _PackedConvFunction(torch.autograd.Function):
    """A packed convolution that passes a gradient to its input (and none to its weight)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, conv: PackedConv2d) -> torch.Tensor:
        ctx.conv = conv
        ctx.input_shape = x.shape
        ctx.input_dtype = x.dtype
        return conv.run(x.detach().to(conv.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.conv.input_gradient(grad, ctx.input_shape).to(ctx.input_dtype), None


def pack_convolutions(module: nn.Module, dtype: torch.dtype) -> int:
    """Replace every plain :class:`~torch.nn.Conv2d` inside ``module`` by a :class:`PackedConv2d`
    in ``dtype`` (in place); returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and _plain(child):
                setattr(parent, name, PackedConv2d(child, dtype))
                count += 1
    return count
