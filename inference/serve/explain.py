"""Grad-CAM over a batch of face crops, and a short text reason derived from each map."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from inference.serve.device import autocast_dtype
from inference.serve.faces import Crop, Face, Landmarks
from inference.serve.model import fold_batchnorm, resolve_layer
from inference.serve.packed import pack_convolutions, packing_available
from inference.serve.personal import reweight


class _FloatLogits(nn.Module):
    """Run the network (under autocast if asked) but hand Grad-CAM float32 tensors (numpy has no bf16).

    The network is held outside the module tree on purpose: Grad-CAM calls ``zero_grad()`` on
    the model it is given before every backward, which walked all 161 parameters of ResNet50
    (none of which takes a gradient here) on every call.
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.__dict__["net"] = model  # not a submodule (see above)
        # Grad-CAM reads the model's device from its first parameter: one empty one, there.
        self.device_marker = nn.Parameter(torch.empty(0, device=device), requires_grad=False)
        self.device_type = device.type
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            out: torch.Tensor = self.__dict__["net"](x)
            return out.float()


def _gradient_starts_here(_module: nn.Module, _inputs: object, out: torch.Tensor) -> torch.Tensor:
    """Forward hook on the target layer: its output as a float32 leaf that requires grad.

    No parameter takes a gradient, so everything before the target layer builds no graph,
    and the backward pass ends at the target layer's output (all Grad-CAM needs) instead of
    also computing weight gradients for its last block, as it did before.
    """
    return out.float().detach().requires_grad_(True)


def _cast_weights(model: nn.Module, dtype: torch.dtype) -> None:
    """Store conv and linear weights in ``dtype`` once, instead of autocast casting all 25 M of
    them on every call (norm layers stay float32, which autocast also keeps them in)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)


# (raw probabilities (B, C), pooled features (B, F) or None) -> adjusted probabilities (B, C):
# the community adapter, applied before any per-user weights.
Adjust = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


@dataclass(frozen=True, slots=True)
class CamBatch:
    """Probabilities (B, classes) and Grad-CAM maps (B, H, W) in [0, 1] at input size."""

    probs: np.ndarray
    maps: np.ndarray
    native_size: tuple[int, int]
    raw_probs: np.ndarray  # the network's own (equal to probs without adjust or weights)
    features: np.ndarray | None = None  # pooled features (B, F), when asked for


class _Chosen:
    """Grad-CAM target for row ``i``: the raw score of the class that wins after the adapter and
    the personal weights. The whole batch's choice is made once, on the first row's call (Grad-CAM
    calls the targets after its forward pass, so the logits and features are there)."""

    def __init__(self, choose: Callable[[], np.ndarray], i: int) -> None:
        self.choose, self.i = choose, i

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        return out[int(self.choose()[self.i])]


class CamClassifier:
    """Classify face crops and explain them with one forward and one backward pass.

    Not thread-safe: Grad-CAM keeps hooks and per-call state on the model. Use one
    instance per thread (the worker runs it in a single-thread executor).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str,
        bf16: bool | None = None,
        temperature: float = 1.0,
        target: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | None = None,
        in_place: bool = False,
        features: bool = False,
    ) -> None:
        """``temperature`` only scales the reported probabilities (Grad-CAM uses the raw class score).

        ``device`` (default: the CPU) is where the network runs: the model moves there, each
        batch follows it, and probabilities and maps come back as float32 numpy arrays. The
        autocast dtype follows the device (:func:`inference.serve.device.autocast_dtype`).

        ``target`` maps one face's logits (a 1-D tensor) to the scalar Grad-CAM explains;
        the default, ``None``, is the predicted class's raw score, the most faithful of the
        targets measured (``benchmarks/cam_faithfulness.py --target``; model card).

        ``in_place``: prepare ``model`` itself for serving instead of a copy; the caller gives it
        up (``Predictor.load``, which loaded it for this alone), so start-up never holds two.

        ``features``: also keep each face's pooled features (the last layer's input), for the
        model's projection and the community adapter.
        """
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature
        self._target = target
        self.device = device or torch.device("cpu")
        self.dtype = autocast_dtype(self.device, bf16)
        # Prepared for serving: norms folded into the convs, weights stored in the autocast dtype.
        # On our own copy unless the caller gave the network up: then theirs is left as it was.
        model = fold_batchnorm((model if in_place else copy.deepcopy(model)).eval()).to(self.device)
        self.model = model  # the serving copy (read-only for callers)
        layer = resolve_layer(model, target_layer)
        # Gradients are only needed from the output back to the target layer's output.
        for p in model.parameters():
            p.requires_grad_(False)
        if packing_available(self.device, self.dtype):  # a CPU: weights packed for oneDNN once
            pack_convolutions(model, self.dtype or torch.float32)
        if self.dtype is not None:
            _cast_weights(model, self.dtype)
        self._hook = layer.register_forward_hook(_gradient_starts_here)
        self._pooled: list[torch.Tensor] = []
        self._feature_hook = (
            model.get_submodule("fc").register_forward_pre_hook(
                lambda _m, args: self._pooled.append(args[0].detach().float())
            )
            if features
            else None
        )
        self._wrapped = _FloatLogits(model, self.device, self.dtype)
        self._cam = GradCAM(model=self._wrapped, target_layers=[layer])

    def __call__(
        self, batch: torch.Tensor, weights: np.ndarray | None = None, adjust: Adjust | None = None
    ) -> CamBatch:
        """Probabilities and maps for a batch; ``adjust`` (the community adapter) maps the
        network's probabilities first, then ``weights`` (B, classes) re-weight each row.

        With either, p'(c) ∝ adjust(p)(c)·w(c), and the map explains the raw score of the top
        class *after* both, so the label, the heatmap and the reason agree.
        """
        self._pooled.clear()
        chosen: dict[str, np.ndarray] = {}

        def finish() -> np.ndarray:
            if "probs" not in chosen:
                logits = self._cam.outputs.detach().float()
                chosen["raw"] = torch.softmax(logits / self.temperature, dim=1).cpu().numpy()
                feats = self._pooled[-1].cpu().numpy() if self._pooled else None
                probs = chosen["raw"] if adjust is None else adjust(chosen["raw"], feats)
                if weights is not None:
                    probs = reweight(probs, weights)
                chosen["probs"] = probs.astype(np.float32)
                chosen["idx"] = probs.argmax(axis=1)
            return chosen["idx"]

        targets: list[Callable[[torch.Tensor], torch.Tensor]] | None = None
        if weights is not None or adjust is not None:
            targets = [_Chosen(finish, i) for i in range(batch.shape[0])]
        elif self._target is not None:
            targets = [self._target] * batch.shape[0]
        maps = self._cam(input_tensor=batch.to(self.device, non_blocking=True), targets=targets)
        finish()
        native = tuple(self._cam.activations_and_grads.activations[0].shape[-2:])
        features = self._pooled[-1].cpu().numpy() if self._pooled else None
        self._pooled.clear()
        self._cam.activations_and_grads.clear()
        self._cam.outputs = None
        native_size = (int(native[0]), int(native[1]))
        maps = np.nan_to_num(maps.astype(np.float32))
        return CamBatch(chosen["probs"], maps, native_size, chosen["raw"].astype(np.float32), features)

    def close(self) -> None:
        """Remove every hook this object put on the model."""
        self._cam.activations_and_grads.release()
        self._hook.remove()
        if self._feature_hook is not None:
            self._feature_hook.remove()

    def __enter__(self) -> CamClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Typical eye and mouth heights in a FER-framed crop (fraction of the side), used when
# the detector gives no landmarks.
DEFAULT_EYE_Y = 0.40
DEFAULT_MOUTH_Y = 0.76

REGION_NAMES = ("forehead", "eyes and brows", "nose and cheeks", "mouth", "chin and jaw")


def landmarks_in_crop(face: Face, crop: Crop, size: int) -> Landmarks | None:
    """Map detector landmarks into the (rotated, scaled) crop's pixel coordinates."""
    if face.landmarks is None:
        return None
    theta = math.radians(crop.angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    k = size / crop.side
    cx, cy = crop.center
    out = []
    for x, y in face.landmarks:
        dx, dy = x - cx, y - cy
        rx, ry = dx * cos + dy * sin, -dx * sin + dy * cos
        out.append((rx * k + size / 2, ry * k + size / 2))
    return Landmarks(*out)


def map_is_empty(cam: np.ndarray) -> bool:
    """True when a Grad-CAM map has no positive evidence anywhere (all zero after the ReLU).

    The one test for "empty" that the heatmap caption and the faithfulness benchmark share;
    :func:`reason_text` sees the same thing as region shares that sum to zero.
    """
    return not float(np.max(cam, initial=0.0)) > 0.0


def region_shares(cam: np.ndarray, marks: Landmarks | None) -> dict[str, float]:
    """Share of the map's mass in each horizontal face band (bands placed by landmarks)."""
    size = cam.shape[0]
    if marks is not None:
        eye_y = (marks.left_eye[1] + marks.right_eye[1]) / 2 / size
        mouth_y = (marks.mouth_left[1] + marks.mouth_right[1]) / 2 / size
        if not 0.1 < eye_y < mouth_y < 0.98:
            eye_y, mouth_y = DEFAULT_EYE_Y, DEFAULT_MOUTH_Y
    else:
        eye_y, mouth_y = DEFAULT_EYE_Y, DEFAULT_MOUTH_Y
    cuts = [0.0, eye_y - 0.14, eye_y + 0.08, mouth_y - 0.08, mouth_y + 0.1, 1.0]
    rows = cam.sum(axis=1)
    total = float(rows.sum()) or 1.0
    shares = {}
    for name, lo, hi in zip(REGION_NAMES, cuts[:-1], cuts[1:], strict=True):
        a, b = round(max(lo, 0.0) * size), round(min(hi, 1.0) * size)
        shares[name] = float(rows[a:b].sum()) / total if b > a else 0.0
    return shares


def reason_text(label: str, shares: dict[str, float]) -> str:
    """One line such as ``"happy: mostly the mouth (48 % of the evidence)"``.

    Grad-CAM keeps only positive evidence; when none of the face has any (an all-zero
    map, seen for calm "neutral" faces, where the score comes from other classes being
    low) the line says so instead of naming a region with 0 %.
    """
    if sum(shares.values()) <= 0.0:
        return f"{label}: no part of the face stood out (the heatmap is empty)"
    top = max(shares, key=lambda k: shares[k])
    second = sorted(shares, key=lambda k: shares[k], reverse=True)[1]
    text = f"{label}: mostly the {top} ({shares[top]:.0%} of the evidence)"
    if shares[second] >= 0.25:
        text += f", then the {second} ({shares[second]:.0%})"
    return text
