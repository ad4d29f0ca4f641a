"""Settings of the emotion engine: ``moodring analyze|evaluate|calibrate`` and the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from inference.api.plugins import DETECTORS, known
from inference.api.settings import WORKING_SIDE, CommonSettings, load_settings


class EngineSettings(CommonSettings):
    """The emotion engine: used by ``moodring analyze|evaluate`` and the worker."""

    face_detector: str = Field(default="mtcnn", description="a module name in inference.serve.detectors")
    torch_threads: int = Field(default=2, ge=1, le=256)
    bf16: bool | None = Field(
        default=None, description="bf16 autocast; unset: on exactly where the CPU has bf16 in hardware"
    )
    precision: Literal["auto", "int8", "bf16", "fp32"] = Field(
        default="auto",
        description="what the network runs in; auto: int8 on a CPU where the model's int8 trunk met its "
        "accuracy rule (model card), else bf16 where the hardware has it, else fp32",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where the network runs; auto: the GPU when PyTorch sees one"
    )
    prepare_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="photos of a batch decoded, detected and rendered at once; unset: 1 on the CPU, "
        "every core with a GPU",
    )
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_side: int = Field(default=WORKING_SIDE, ge=256, le=8192)

    def predictor_options(self) -> dict[str, Any]:
        """``Predictor.load``'s keywords from these settings: the worker and the CLIs load alike."""
        options = self.model_dump(include={"model_dir", "bf16", "device", "prepare_threads", "precision"})
        return {**options, "detector": self.face_detector}

    @field_validator("face_detector")
    @classmethod
    def _known_detector(cls, v: str) -> str:
        return known(DETECTORS, v, "face detector")


def engine_settings(model_dir: Path | None = None, detector: str | None = None) -> EngineSettings:
    """Engine settings for a CLI command (exit 2 on bad config), logging and torch threads set.

    CLI options win over the environment. Logging is quiet (WARNING) unless asked for more.
    """
    from inference.api.logsetup import configure_logging
    from inference.serve.device import use_threads

    overrides: dict[str, Any] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir
    if detector is not None:
        overrides["face_detector"] = detector
    settings = load_settings(EngineSettings, **overrides)
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level, settings.log_json)
    use_threads(settings.torch_threads)
    return settings
