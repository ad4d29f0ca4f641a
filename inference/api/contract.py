"""The JSON job contract between the bot (submitter) and the workers. No torch, never pickle.

Redis layout (all keys share the ``moodring:`` prefix; the stream side is
:mod:`inference.api.transport`). Braces are Redis Cluster hash tags: the keys of one job share
``{<job id>}`` so they sit on one slot (the answer-once script touches them together).

* the job stream(s) (one consumer group); entries carry one ``job`` JSON field.
* ``moodring:job:{<job id>}:img``: the (downscaled, EXIF-stripped) photo, short TTL, deleted by
  the worker as soon as the job is done.
* ``moodring:job:{<job id>}:res``: a list the submitter ``BLPOP``s; the worker ``RPUSH``es the
  result. ``:waiting`` and ``:done`` (transport) sit beside it.
* ``moodring:inflight:{<user hash>}``: one job in flight per user.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# The versions are the ``schema_version`` literals of ``Job`` (still 2) and ``JobResult`` (4
# since faces carry the adapter version and the sender's projected features; 3 turned the
# heatmap into a JPEG): a message of another version fails validation instead of being
# half-read. Upgrade bots and workers together (docs/architecture.md).

ErrorCode = Literal[
    "no_face", "bad_image", "too_large", "too_many_pixels", "timeout", "internal", "busy", "invalid_job"
]

# The longest a job may be waited for (submitted_at to deadline): job timeouts are capped here
# (QueueSettings.job_timeout_s), so a deadline further out is a bad job, not a patient caller.
MAX_JOB_S = 600.0


def hash_user(user_id: int | str, salt: str = "moodring") -> str:
    """A stable pseudonymous id for logs and keys (never the raw Discord id in logs)."""
    return hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).hexdigest()


def job_key(job_id: str, name: str) -> str:
    """A key of one job; every key of a job shares its hash tag (one cluster slot)."""
    return f"moodring:job:{{{job_id}}}:{name}"


def image_key(job_id: str) -> str:
    return job_key(job_id, "img")


def result_key(job_id: str) -> str:
    return job_key(job_id, "res")


def inflight_key(user_hash: str) -> str:
    return f"moodring:inflight:{{{user_hash}}}"


def first_problem(exc: ValidationError, whole: str = "") -> str:
    """The contract's first complaint in one line: where (dotted; ``whole`` for a rule across
    fields), and what."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or whole
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class _Frozen(BaseModel):
    # allow_inf_nan=False: JSON's 1e999 parses as infinity, and NaN/inf would travel through
    # softmaxes into results that serialise as null; every number of the contract is finite.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


Weight = Annotated[float, Field(ge=0, le=1e6)]
Probability = Annotated[float, Field(ge=0, le=1)]


class JobOptions(_Frozen):
    heatmap: bool = True
    # About the sender, applied by the worker to the largest face (theirs) before its label,
    # Grad-CAM target, reason and caption (inference.serve.personal). Empty: none.
    # prior: class weights from their corrections (a class it doesn't name keeps weight 1).
    prior: dict[str, Weight] = Field(default_factory=dict, max_length=64)
    # baseline: the probabilities of their calm face's reading (only numbers, never an image).
    baseline: dict[str, Probability] = Field(default_factory=dict, max_length=64)


JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class Job(_Frozen):
    """One photo to analyse.

    ``image_key`` must be the job's own photo key (:func:`image_key` of its id): a job that names
    another job's photo is refused, never answered from it. ``deadline`` lies after
    ``submitted_at`` by at most :data:`MAX_JOB_S`.
    """

    schema_version: Literal[2] = 2
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    user_hash: str = Field(max_length=64)
    image_key: str
    submitted_at: float = Field(ge=0)
    deadline: float = Field(ge=0)
    options: JobOptions = JobOptions()

    @model_validator(mode="after")
    def _own_photo_and_sane_deadline(self) -> Job:
        if self.image_key != image_key(self.job_id):
            raise ValueError("image_key is not this job's photo key")
        if not 0 < self.deadline - self.submitted_at <= MAX_JOB_S:
            raise ValueError(f"deadline must be within {MAX_JOB_S:g} s after submitted_at")
        return self


class FaceResult(_Frozen):
    """One face, the same shape from the predictor through the queue to the reply.

    ``probs`` are the class probabilities after the sender's prior and calm-face baseline (when
    sent; the largest face only); ``emotion`` is their top class, and the reason and heatmap
    explain it.
    """

    box: tuple[float, float, float, float]
    score: float
    emotion: str
    confidence: float
    probs: dict[str, float]
    reason: str
    regions: dict[str, float] = Field(default_factory=dict)
    prior_applied: bool = False
    baseline_applied: bool = False
    # the network's own probabilities of the sender's face when an adapter, prior or calm face
    # changed ``probs`` (else empty: ``probs`` are the network's own)
    raw_probs: dict[str, float] = Field(default_factory=dict)
    adapter: str = ""  # the community adapter version applied ("" none)
    # the sender's face only: its projected features (inference.serve.projection), base64 of
    # little-endian float16; kept by the bot only for users who chose to contribute labels
    features: str = Field(default="", max_length=4096)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely classes, most likely first."""
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]


class JobError(_Frozen):
    code: ErrorCode
    detail: str = ""


class JobResult(_Frozen):
    """What a worker answers: faces (largest first) and the heatmap JPEG, or a typed error."""

    schema_version: Literal[4] = 4
    job_id: str
    faces: tuple[FaceResult, ...] = ()
    faces_found: int = 0  # every face the detector saw; ``faces`` keeps the largest few
    heatmap_jpeg_b64: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    error: JobError | None = None
    worker: str = ""
    batch_size: int = 0
