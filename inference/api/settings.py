"""Typed settings (pydantic-settings), built once in an entry point and passed down.

Every process reads ``MOODRING_*`` variables (and a ``.env`` file in the working
directory). Importing this module reads nothing; :func:`load_settings` does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.api.contract import MAX_JOB_S
from inference.api.plugins import BROKERS, known

EXIT_CONFIG = 2

# Working resolution: the long side photos are decoded (and queued) at. The face
# detector runs at this scale and the heatmap JPEG users see has this size; more
# costs decoding, queue transfer and rendering time without finding more faces
# (faces under ~40 px at this scale are below MTCNN's minimum anyway).
WORKING_SIDE = 640

S = TypeVar("S", bound=BaseSettings)


class CommonSettings(BaseSettings):
    """Settings every moodring process has."""

    model_config = SettingsConfigDict(env_prefix="MOODRING_", env_file=".env", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    model_dir: Path | None = Field(
        default=None,
        description="checkpoint dir (manifest + weights); default: the shipped one. The bot reads only "
        "its manifest's class list",
    )


def describe_error(exc: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """One line naming every bad or missing variable."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"])
        if not name:  # a rule across fields (a model validator) names its variables itself
            parts.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        field = settings_cls.model_fields.get(name)
        env = (field.alias if field is not None and field.alias else f"{prefix}{name}").upper()
        parts.append(f"{env} is required" if err["type"] == "missing" else f"{env}: {err['msg']}")
    return "; ".join(parts)


def load_settings(settings_cls: type[S], **overrides: Any) -> S:
    """Build settings or exit with one clear line and status 2 (never a traceback)."""
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        _die(f"moodring: configuration error: {describe_error(exc, settings_cls)}")


def _die(message: str) -> NoReturn:
    print(message, file=sys.stderr)  # noqa: T201 - start-up failure before logging exists
    raise SystemExit(EXIT_CONFIG)


class QueueSettings(CommonSettings):
    """The job queue (Redis Streams by default), shared by the submitting bot and the workers."""

    broker: str = Field(default="redis_streams", description="a module name in inference.api.brokers")
    redis_url: str = "redis://127.0.0.1:6379/0"
    blob_redis_url: str | None = Field(
        default=None,
        description="a Redis WITHOUT persistence for photo and result bytes (never on disk); "
        "unset: the main Redis (then run that one without persistence)",
    )
    redis_cluster: bool = Field(
        default=False,
        description="the Redis URLs point at a Redis Cluster (any node); every client is a RedisCluster",
    )
    stream: str = "moodring:jobs"
    queue_shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="job streams, each with its own hash tag (on a cluster: spread over the masters)",
    )
    group: str = "workers"
    stream_maxlen: int = Field(default=10_000, ge=100)
    max_backlog: int = Field(default=200, ge=1, description="lag + pending above this: refuse as busy")
    result_ttl_s: int = Field(default=60, ge=5)
    job_timeout_s: float = Field(default=20.0, gt=0, le=MAX_JOB_S)
    worker_beat_s: float = Field(
        default=2.0, gt=0, le=60, description="a worker beats this often, busy or idle (its own task)"
    )
    worker_alive_s: float = Field(
        default=6.0,
        gt=0,
        description="a worker that beat within this many seconds counts as up (a few beats: a worker "
        "that died is noticed this soon)",
    )

    @field_validator("broker")
    @classmethod
    def _known_broker(cls, v: str) -> str:
        return known(BROKERS, v, "broker")

    @model_validator(mode="after")
    def _alive_spans_beats(self) -> QueueSettings:
        if self.worker_alive_s < 2 * self.worker_beat_s:
            raise ValueError(
                f"MOODRING_WORKER_ALIVE_S ({self.worker_alive_s:g}) is under two beats "
                f"(MOODRING_WORKER_BEAT_S = {self.worker_beat_s:g}): one late beat would report "
                "analysis as down; make it at least twice the beat interval"
            )
        return self

    @model_validator(mode="after")
    def _no_silent_trim(self) -> QueueSettings:
        # XADD trims each stream to about stream_maxlen entries; a backlog cap above it lets
        # accepted jobs be trimmed unread (no answer, no dead letter, no log).
        if self.stream_maxlen < self.max_backlog:
            raise ValueError(
                f"MOODRING_STREAM_MAXLEN ({self.stream_maxlen}) is below MOODRING_MAX_BACKLOG "
                f"({self.max_backlog}): accepted jobs would be trimmed from the stream unread; "
                "raise MOODRING_STREAM_MAXLEN to at least the backlog cap"
            )
        return self
