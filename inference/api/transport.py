"""The broker's one door: the :class:`Transport` submitters and workers use, and
:func:`open_transport`, which opens the broker ``MOODRING_BROKER`` names (a module of
:mod:`inference.api.brokers`; the default, ``redis_streams``, is the job queue on Redis Streams).

Submitters and workers talk to the queue only through this module, so a broker swap (another
stream engine, a managed queue) is one new module in :mod:`inference.api.brokers`; the worker's
job handling (:mod:`inference.worker.service`), the submit client (:mod:`inference.api.client`),
the doctor and the metrics don't change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis

from inference.api.connect import connect
from inference.api.contract import Job, JobResult
from inference.api.plugins import BROKERS, load
from inference.api.settings import QueueSettings
from inference.api.stream_protocol import (
    TRANSIENT,
    WORKERS_KEY,
    Backlog,
    Delivery,
    Fetched,
    done_key,
    retry_transient,
    shard_streams,
    waiting_key,
)

# The names callers use from here (the broker's one door); they are defined beside it.
__all__ = [
    "TRANSIENT",
    "WORKERS_KEY",
    "Backlog",
    "Delivery",
    "Fetched",
    "Transport",
    "connect_blobs",
    "done_key",
    "open_transport",
    "retry_transient",
    "shard_streams",
    "waiting_key",
]


class Transport(Protocol):
    """What submitters and workers need from a broker."""

    async def ensure_group(self) -> None: ...
    async def backlog(self) -> Backlog: ...
    async def lock_user(self, user_hash: str, job_id: str, ttl_s: int) -> bool: ...
    async def submit(self, job: Job, image: bytes, ttl_s: int, max_backlog: int) -> bool: ...
    async def wait_result(self, job_id: str, wait_s: float) -> JobResult: ...
    async def cleanup(self, job_id: str, user_hash: str) -> None: ...
    async def heartbeat(self, consumer: str, model: str = ..., precision: str = ...) -> None: ...
    async def leave(self, consumer: str) -> None: ...
    async def workers_alive(self, within_s: float) -> int: ...
    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]: ...
    async def claim_stale(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]: ...
    async def recover(self) -> None: ...
    async def images(self, jobs: Sequence[Job]) -> list[Fetched]: ...
    async def finish(self, done: Sequence[tuple[Delivery, JobResult | None]]) -> None: ...
    async def dead_letter(
        self, consumer: str, delivery: Delivery, result: JobResult | None, reason: str = ...
    ) -> None: ...
    async def prune_consumers(self, keep: str, idle_ms: int) -> list[str]: ...
    # what the doctor, the metrics and the container health check read
    async def alive_workers(self, within_s: float) -> dict[str, str]: ...
    async def recent_heartbeats(self, host: str) -> list[tuple[float, str, str]]: ...
    async def dead_letter_count(self) -> int: ...
    def dead_letter_command(self) -> str: ...
    async def stale_locks(self, ttl_ms: int) -> int: ...


def connect_blobs(settings: QueueSettings, **options: Any) -> Redis | None:
    """A client for the blob store when one is configured (the caller closes it), else None."""
    if not settings.blob_redis_url:
        return None
    return connect(settings.blob_redis_url, settings.redis_cluster, **options)


def open_transport(
    redis: Redis, settings: QueueSettings, dead_letter_stream: str = "", blobs: Redis | None = None
) -> Transport:
    """The broker every process uses (``MOODRING_BROKER``); the one place that picks it."""
    broker: Transport = load(BROKERS, settings.broker, "broker").open(
        redis, settings, dead_letter_stream, blobs
    )
    return broker
