"""Settings of ``moodring worker``: the engine, the queue and the worker loop's knobs."""

from __future__ import annotations

from pydantic import Field

from inference.api.settings import QueueSettings
from inference.serve.settings import EngineSettings


class WorkerSettings(EngineSettings, QueueSettings):
    """``moodring worker``: engine + queue + worker loop knobs."""

    batch_size: int = Field(default=8, ge=1, le=256)
    block_ms: int = Field(default=500, ge=10)
    claim_idle_ms: int = Field(default=15_000, ge=100)
    max_deliveries: int = Field(default=3, ge=1)
    dead_letter_stream: str = "moodring:jobs:dead"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # the community adapter (inference.serve.adapter): how often the active version is looked up,
    # how often one worker refits it from users' labels (0: never; `moodring adapt fit` still
    # works), how soon after a contributor withdraws, and the activation guard's two numbers
    adapt_poll_s: float = Field(default=5.0, gt=0)
    adapt_every_s: float = Field(default=86_400.0, ge=0)
    adapt_withdrawn_s: float = Field(default=3_600.0, gt=0)
    adapt_min_people: int = Field(default=20, ge=1)
    adapt_margin: float = Field(default=1.0, ge=0)
