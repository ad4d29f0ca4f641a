"""The job queue on Redis Streams (the default broker).

Redis Streams semantics used: one consumer group; ``XREADGROUP COUNT BLOCK`` to read,
``XAUTOCLAIM`` to take over entries of a dead consumer, ``XACK`` + ``XDEL`` when done, a
dead-letter stream for entries delivered too often; results are ``RPUSH``ed to a per-job list
the submitter ``BLPOP``s. Its calls are written in :mod:`~inference.api.stream_submit` and
:mod:`~inference.api.stream_worker`, their names and scripts in
:mod:`~inference.api.stream_protocol`.

Sharding (``MOODRING_QUEUE_SHARDS``, and always on a Redis Cluster): the queue is N streams,
each under its own hash tag with its dead-letter stream beside it (one slot per shard, so a
shard's ack + dead letter stay one transaction). The tags are picked so that shard i's slot
lies in the i-th N-th of the slot range, which ``redis-cli --cluster create`` hands to the
i-th master: with N = masters, each master carries one shard. A submitter puts a job on the
shard its id hashes to (or the next with room); every worker reads, claims and prunes all
shards.
"""

from __future__ import annotations

from redis.asyncio import Redis

from inference.api.settings import QueueSettings
from inference.api.stream_submit import SubmitSide
from inference.api.stream_worker import WorkerSide


class StreamTransport(SubmitSide, WorkerSide):
    """The job queue on Redis Streams (N shard streams, one consumer group, dead-letter streams):
    the submit side (:mod:`inference.api.stream_submit`) and the worker side
    (:mod:`inference.api.stream_worker`) over one set of clients and names.

    Photo and result bytes (the heatmap is a copy of the photo) go to ``blobs``: a Redis run
    without persistence, so no photo ever reaches a disk (``MOODRING_BLOB_REDIS_URL``; compose's
    ``redis-blobs``). Jobs, acks and dead letters stay in ``redis``, which may persist (AOF).
    Without ``blobs`` both live in ``redis``.
    """

    def dead_letter_command(self) -> str:
        """How an operator reads the dead letters (the doctor prints it)."""
        return f"redis-cli XRANGE {next(iter(self.dead.values()))} - +"


def open(
    redis: Redis, settings: QueueSettings, dead_letter_stream: str = "", blobs: Redis | None = None
) -> StreamTransport:
    return StreamTransport(redis, settings, dead_letter_stream, blobs)
