"""The JSON job contract between the bot (submitter) and the workers. No torch, never pickle.

Redis layout (all keys share the ``moodring:`` prefix):

* ``{stream}``: the job stream (one consumer group); entries carry one ``job`` JSON field.
* ``moodring:img:{job_id}``: the (downscaled, EXIF-stripped) photo, short TTL, deleted by the
  worker as soon as the job is done.
* ``moodring:res:{job_id}``: a list the submitter ``BLPOP``s; the worker ``RPUSH``es the result.
* ``moodring:inflight:{user_hash}``: one job in flight per user.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inference.emotions import Emotion

SCHEMA_VERSION = 1

ErrorCode = Literal["no_face", "bad_image", "too_large", "timeout", "internal", "busy"]


def hash_user(user_id: int | str, salt: str = "moodring") -> str:
    """A stable pseudonymous id for logs and keys (never the raw Discord id in logs)."""
    return hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).hexdigest()


def image_key(job_id: str) -> str:
    return f"moodring:img:{job_id}"


def result_key(job_id: str) -> str:
    return f"moodring:res:{job_id}"


def inflight_key(user_hash: str) -> str:
    return f"moodring:inflight:{user_hash}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JobOptions(_Frozen):
    heatmap: bool = True


class Job(_Frozen):
    """One photo to analyse."""

    schema_version: Literal[1] = 1
    job_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    user_hash: str = Field(max_length=64)
    image_key: str
    submitted_at: float
    deadline: float
    options: JobOptions = JobOptions()


class FaceOut(_Frozen):
    box: tuple[float, float, float, float]
    score: float
    emotion: Emotion
    confidence: float
    probs: dict[Emotion, float]
    reason: str


class JobError(_Frozen):
    code: ErrorCode
    detail: str = ""


class JobResult(_Frozen):
    """What a worker answers: faces (largest first) and the heatmap PNG, or a typed error."""

    schema_version: Literal[1] = 1
    job_id: str
    faces: tuple[FaceOut, ...] = ()
    heatmap_png_b64: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    error: JobError | None = None
    worker: str = ""
    batch_size: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None
