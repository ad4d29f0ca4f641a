"""The broker: the job queue on Redis Streams, behind one small :class:`Transport`.

Submitters and workers talk to the queue only through this module (its calls are written in
:mod:`~inference.api.stream_submit` and :mod:`~inference.api.stream_worker`, their names and
scripts in :mod:`~inference.api.stream_protocol`), so a broker swap (another stream engine, a
managed queue) is a new class plus the line in :func:`open_transport`;
the worker's job handling (:mod:`inference.worker.service`) and the submit client
(:mod:`inference.api.client`) don't change.

Redis Streams semantics used: one consumer group; ``XREADGROUP COUNT BLOCK`` to read,
``XAUTOCLAIM`` to take over entries of a dead consumer, ``XACK`` + ``XDEL`` when done, a
dead-letter stream for entries delivered too often; results are ``RPUSH``ed to a per-job list
the submitter ``BLPOP``s.

Sharding (``MOODRING_QUEUE_SHARDS``, and always on a Redis Cluster): the queue is N streams,
each under its own hash tag with its dead-letter stream beside it (one slot per shard, so a
shard's ack + dead letter stay one transaction). The tags are picked so that shard i's slot
lies in the i-th N-th of the slot range, which ``redis-cli --cluster create`` hands to the
i-th master: with N = masters, each master carries one shard. A submitter puts a job on the
shard its id hashes to (or the next with room); every worker reads, claims and prunes all
shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis

from inference.api.connect import connect
from inference.api.contract import Job, JobResult
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
from inference.api.stream_submit import SubmitSide
from inference.api.stream_worker import WorkerSide

# The names callers use from here (the broker's one door); they are defined beside it.
__all__ = [
    "TRANSIENT",
    "WORKERS_KEY",
    "Backlog",
    "Delivery",
    "Fetched",
    "StreamTransport",
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
    async def heartbeat(self, consumer: str) -> None: ...
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


class StreamTransport(SubmitSide, WorkerSide):
    """The job queue on Redis Streams (N shard streams, one consumer group, dead-letter streams):
    the submit side (:mod:`inference.api.stream_submit`) and the worker side
    (:mod:`inference.api.stream_worker`) over one set of clients and names.

    Photo and result bytes (the heatmap is a copy of the photo) go to ``blobs``: a Redis run
    without persistence, so no photo ever reaches a disk (``MOODRING_BLOB_REDIS_URL``; compose's
    ``redis-blobs``). Jobs, acks and dead letters stay in ``redis``, which may persist (AOF).
    Without ``blobs`` both live in ``redis``.
    """


def connect_blobs(settings: QueueSettings, **options: Any) -> Redis | None:
    """A client for the blob store when one is configured (the caller closes it), else None."""
    if not settings.blob_redis_url:
        return None
    return connect(settings.blob_redis_url, settings.redis_cluster, **options)


def open_transport(
    redis: Redis, settings: QueueSettings, dead_letter_stream: str = "", blobs: Redis | None = None
) -> StreamTransport:
    """The broker every process uses; the one place that picks it."""
    return StreamTransport(redis, settings, dead_letter_stream, blobs)
