"""Load a model directory (manifest.json + safetensors weights) into a ready network."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from inference.api.errors import ModelError
from inference.api.manifest import MANIFEST_FILE, ModelManifest, default_model_dir, sha256_file
from inference.serve.model import build_resnet50

log = logging.getLogger(__name__)


def load_model(model_dir: Path | None = None, verify: bool = True) -> tuple[nn.Module, ModelManifest]:
    """Build the network described by ``model_dir/manifest.json`` and load its weights (fp32, eval)."""
    model_dir = model_dir or default_model_dir()
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(f"no manifest.json in {model_dir}")
    try:
        manifest = ModelManifest.load(manifest_path)
    except ValueError as exc:
        raise ModelError(f"invalid manifest {manifest_path}: {exc}") from exc
    weights = model_dir / manifest.weights_file
    if not weights.is_file():
        raise ModelError(f"weights file {weights} is missing")
    if verify and sha256_file(weights) != manifest.weights_sha256:
        raise ModelError(f"sha256 of {weights} does not match its manifest")
    model = build_resnet50(len(manifest.classes), manifest.in_channels, manifest.stem)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights in {weights} do not fit the manifest's architecture: {exc}") from exc
    model = model.to(memory_format=torch.channels_last).eval()
    log.info(
        "loaded %s (%s, %d classes, %d px) from %s",
        manifest.architecture,
        manifest.stem,
        len(manifest.classes),
        manifest.input_size,
        model_dir,
    )
    return model, manifest
