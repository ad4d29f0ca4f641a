"""An int8 serving copy of the network's trunk (the stem and layer1–layer3), for CPUs.

Grad-CAM needs gradients only from the logits back to ``layer3``'s output (the backward starts
there: :mod:`inference.serve.explain`), so everything before that output may run in int8 while
``layer4`` and the head keep float and autograd. :class:`Int8Net` is that network: the quantized
trunk, then an ``nn.Identity`` named ``layer3`` (the Grad-CAM target: the trunk's float output),
then the float ``layer4``, pooling and ``fc``, so the maps and the text reasons come from the same
``layer3`` activations as the float network's, through the same ``pytorch-grad-cam``.

Post-training static quantization with PyTorch's FX graph mode on the ``x86`` engine (fbgemm and
oneDNN kernels; per-channel int8 weights, activations calibrated on FER2013 training faces by
``moodring quantize``). The file is safetensors, checked by its sha256 in the manifest like the
other model files: each quantized weight as its int8 values, per-channel scales and zero points.

PyTorch marks the FX path deprecated in favour of torchao's PT2E; the PT2E x86 path runs fast only
through ``torch.compile`` (minutes of start-up on a 2-core box), so the FX path stays while the
pinned torch (2.14) has it.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inference.api.errors import ModelError
from inference.api.manifest import ModelManifest, sha256_file
from inference.serve.model import fold_batchnorm

log = logging.getLogger(__name__)

ENGINE = "x86"
INT8_FILE = "trunk_int8.safetensors"
_PARTS = (".scales", ".zero_points", ".axis")  # what a quantized weight is stored as, beside its values


class Trunk(nn.Module):
    """The stem and layer1–layer3 of a (BatchNorm-folded) torchvision ResNet."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = model.conv1, model.bn1, model.relu, model.maxpool
        self.layer1, self.layer2, self.layer3 = model.layer1, model.layer2, model.layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: torch.Tensor = self.layer3(self.layer2(self.layer1(x)))
        return out


class Int8Net(nn.Module):
    """The int8 trunk, then ``layer3`` (an identity: where Grad-CAM's backward starts), then the
    float ``layer4``, ``avgpool`` and ``fc`` of the same network."""

    def __init__(self, trunk: nn.Module, model: Any) -> None:
        super().__init__()
        # PyTorch 2.14 warns on every quantized tensor it makes (the FX path's deprecation; see
        # the module docstring): once per process in the logs is noise, per call in tests an error.
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
        self.trunk = trunk
        self.layer3 = nn.Identity()
        self.layer4, self.avgpool, self.fc = model.layer4, model.avgpool, model.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.trunk(x.contiguous()))
        out: torch.Tensor = self.fc(torch.flatten(self.avgpool(self.layer4(x)), 1))
        return out


def int8_kernels() -> bool:
    """True where this PyTorch has the ``x86`` quantized engine for this CPU (AVX2 or better)."""
    return ENGINE in torch.backends.quantized.supported_engines


@contextmanager
def _quiet() -> Iterator[None]:
    """The FX path warns about its deprecation on every call: once in the docstring is enough."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _prepared(model: nn.Module, example: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    # a copy of the trunk only (not layer4, two thirds of the weights): the caller's model is untouched
    trunk = (
        fold_batchnorm(copy.deepcopy(Trunk(model)).eval()).float().to(memory_format=torch.contiguous_format)
    )
    with _quiet():
        return prepare_fx(trunk, get_default_qconfig_mapping(ENGINE), (example,))


def _converted(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        return convert_fx(prepared)  # type: ignore[arg-type]


def quantize_trunk(model: nn.Module, faces: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """Calibrate activation ranges on ``faces`` (N, C, H, W, normalised) and return the int8 trunk."""
    if len(faces) == 0:
        raise ValueError("calibration needs faces")
    prepared = _prepared(model, faces[:1])
    with torch.no_grad():
        for start in range(0, len(faces), batch_size):
            prepared(faces[start : start + batch_size])
    return _converted(prepared)


def save_trunk(trunk: nn.Module, path: Path) -> str:
    """Write the int8 trunk as safetensors; returns the file's sha256 for the manifest."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, value in trunk.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.is_quantized:
            if value.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
                raise ValueError(f"{name}: only per-channel int8 weights are stored, not {value.qscheme()}")
            tensors[name] = value.int_repr().contiguous()
            tensors[f"{name}.scales"] = value.q_per_channel_scales().float().contiguous()
            tensors[f"{name}.zero_points"] = value.q_per_channel_zero_points().contiguous()
            tensors[f"{name}.axis"] = torch.tensor(value.q_per_channel_axis())
        else:
            tensors[name] = value.detach().contiguous()
    save_file(tensors, str(path), metadata={"engine": ENGINE})  # one key: the header is reproducible
    return sha256_file(path)


def load_trunk(model: nn.Module, path: Path, input_size: int, in_channels: int = 1) -> nn.Module:
    """The int8 trunk stored at ``path`` for ``model``'s architecture (its float weights unused)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        stored = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    state: dict[str, torch.Tensor] = {}
    with _quiet():  # the per-channel tensors below are what PyTorch warns about
        for name, value in stored.items():
            if name.endswith(_PARTS):
                continue
            if f"{name}.axis" not in stored:
                state[name] = value
            else:
                state[name] = torch._make_per_channel_quantized_tensor(
                    value,
                    stored[f"{name}.scales"].double(),
                    stored[f"{name}.zero_points"],
                    int(stored[f"{name}.axis"]),
                )
    trunk = _converted(_prepared(model, torch.zeros(1, in_channels, input_size, input_size)))
    try:
        with _quiet():
            trunk.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{path} does not fit this model's trunk: {exc}") from exc
    return trunk


def int8_net(model: nn.Module, manifest: ModelManifest, model_dir: Path, verify: bool = True) -> Int8Net:
    """``model`` with its trunk replaced by the manifest's int8 file (``model``'s own layers reused).

    Raises:
        ModelError: the manifest names no int8 file, it is missing, or its sha256 doesn't match.
    """
    if not manifest.int8_file:
        raise ModelError("the manifest names no int8 trunk (moodring quantize writes one)")
    path = model_dir / manifest.int8_file
    if not path.is_file():
        raise ModelError(f"int8 trunk {path} is missing")
    if verify and sha256_file(path) != manifest.int8_sha256:
        raise ModelError(f"sha256 of {path} does not match its manifest")
    trunk = load_trunk(model, path, manifest.input_size, manifest.in_channels)
    folded = fold_batchnorm(model.eval())
    return Int8Net(trunk, folded).eval()
