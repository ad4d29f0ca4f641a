"""Write a trained network as the served model: fp16 safetensors and its manifest."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from inference.api.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from inference.serve.model import STEM_FER
from inference.training.config import TrainConfig
from inference.training.data import FER2013_CLASSES

TARGET_LAYER = "layer3"


def write_weights(model: nn.Module, out_dir: Path) -> Path:
    """Write the network's state as fp16 safetensors (``out_dir/model.safetensors``)."""
    weights = out_dir / "model.safetensors"
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(weights))
    return weights


def export_model(
    model: nn.Module,
    out_dir: Path,
    cfg: TrainConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    val_accuracy: float,
) -> ModelManifest:
    """Write fp16 safetensors weights and their manifest into ``out_dir``."""
    weights = write_weights(model, out_dir)
    cam_size = cfg.eval_size
    for _ in range(3):  # stem max-pool, layer2 and layer3 each halve the map
        cam_size = (cam_size + 1) // 2
    manifest = ModelManifest(
        stem=STEM_FER,
        classes=FER2013_CLASSES,
        input_size=cfg.eval_size,
        in_channels=1,
        mean=mean,
        std=std,
        target_layer=TARGET_LAYER,
        cam_size=cam_size,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        train_command=cfg.command,
        data=f"FER2013 Training ({cfg.data}), selected on PublicTest ({cfg.val})",
        val_accuracy=round(val_accuracy, 4),
    )
    manifest.dump(out_dir / MANIFEST_FILE)
    return manifest
