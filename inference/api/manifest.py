"""Model manifest: everything needed to rebuild and feed the network, next to its weights."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"


class ModelManifest(BaseModel):
    """Describes a checkpoint; preprocessing and Grad-CAM are configured from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_version: int = MANIFEST_VERSION
    architecture: str = "resnet50"
    stem: str
    classes: tuple[str, ...] = Field(description="class names in the network's output order")
    input_size: int = Field(gt=0)
    in_channels: int = Field(default=1, ge=1, le=3)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_layer: str
    cam_size: int = Field(gt=0, description="side of the native Grad-CAM map at input_size")
    weights_file: str
    weights_sha256: str
    weights_dtype: str = "float16"
    train_command: str = ""
    data: str = ""
    val_accuracy: float | None = None
    val_accuracy_tta: float | None = None
    temperature: float = Field(
        default=1.0,
        gt=0,
        description="softmax temperature: probs = softmax(logits / T); 1 = uncalibrated (moodring calibrate)",
    )
    baseline_alpha: float = Field(
        default=1.0,
        ge=0,
        le=4,
        description="how much of a user's calm-face lean is divided out: w(c) = p_calm(c)^-alpha",
    )
    projection_file: str = Field(
        default="",
        description="a fixed projection of the pooled features (inference.serve.projection); empty: none",
    )
    projection_sha256: str = ""
    int8_file: str = Field(
        default="",
        description="the trunk (stem, layer1-layer3) in int8, for CPUs (moodring quantize); empty: none",
    )
    int8_sha256: str = ""
    int8_checks: dict[str, float] = Field(
        default_factory=dict,
        description="the int8 accuracy rule as measured: FER2013 PublicTest and taiwanese_dev --detect "
        "accuracy against fp32 (points) and Grad-CAM agreement (mean IoU of the top-20 % region)",
    )
    int8_meets_rule: bool = Field(
        default=False, description="the measured checks met the rule: int8 may be served by default"
    )
    notes: str = ""

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) < 2 or len(set(v)) != len(v) or not all(v):
            raise ValueError("classes must be at least two unique non-empty names")
        return v

    @classmethod
    def load(cls, path: Path) -> ModelManifest:
        """Read and validate a manifest JSON file."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def dump(self, path: Path) -> None:
        """Write the manifest as indented JSON."""
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def model_id(manifest: ModelManifest) -> str:
    """A short name for the exact weights (workers beat it; ``moodring doctor`` compares it)."""
    return manifest.weights_sha256[:12]


def default_model_dir() -> Path:
    """The checkpoint that ships inside the installed ``inference`` package."""
    return Path(str(resources.files("inference") / "weights"))


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
