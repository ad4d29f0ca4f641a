"""ResNet50 adapted to 48x48 grey FER2013 faces."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import resnet50

STEM_FER = "conv3x3s1-maxpool"


def build_resnet50(num_classes: int, in_channels: int = 1, stem: str = STEM_FER) -> nn.Module:
    """Build a torchvision ResNet50 with a small-image stem.

    The ImageNet stem (7x7 stride-2 conv + max-pool) divides a 48 px face by 4
    before the first residual stage, leaving 3x3 maps at ``layer3`` and 2x2 at
    ``layer4``. The FER stem keeps the max-pool but uses a 3x3 stride-1 conv on
    the grey channel, so stage resolutions are 24/12/6/3 and ``layer3`` yields a
    6x6 Grad-CAM map at 48 px.
    """
    model = resnet50(num_classes=num_classes, zero_init_residual=True)
    if stem == STEM_FER:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    elif stem == "imagenet":
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    else:
        raise ValueError(f"unknown stem {stem!r}")
    return model  # type: ignore[no-any-return]  # torchvision's resnet50 is untyped here


def resolve_layer(model: nn.Module, dotted: str) -> nn.Module:
    """Return the sub-module named by a dotted path such as ``layer3`` or ``layer4.2``."""
    module = model
    for part in dotted.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Split parameters so that norms and biases get no weight decay."""
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a conv into that conv (in place; returns it).

    ResNet's ``convN``/``bnN`` pairs and ``downsample`` (conv, norm) become one conv with a bias:
    the same function in eval mode (to float rounding), 53 fewer layers to run per face.
    """
    for module in list(model.modules()):
        for n in (1, 2, 3):
            conv, norm = getattr(module, f"conv{n}", None), getattr(module, f"bn{n}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                setattr(module, f"conv{n}", fuse_conv_bn_eval(conv.eval(), norm.eval()))
                setattr(module, f"bn{n}", nn.Identity())
        down = getattr(module, "downsample", None)
        if isinstance(down, nn.Sequential) and len(down) == 2:
            conv, norm = down[0], down[1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module.downsample = nn.Sequential(fuse_conv_bn_eval(conv.eval(), norm.eval()))
    return model
