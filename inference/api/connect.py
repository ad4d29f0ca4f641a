"""Redis clients: one Redis, or a Redis Cluster reached through any of its nodes.

``MOODRING_REDIS_CLUSTER=true`` makes every client of a process a ``RedisCluster`` (redis-py),
for the main Redis and the blob Redis alike. moodring keeps every multi-key operation inside
one hash slot (a user's keys share ``{<user hash>}``, a session's ``{<channel>}``, a job's
``{<job id>}``, a queue shard its own tag), so the same code runs on both.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis


def connect(url: str, cluster: bool = False, **options: Any) -> Redis:
    """A client for ``url``; with ``cluster``, a ``RedisCluster`` that finds the other nodes itself.

    Typed as :class:`Redis`: the commands, pipelines (transactions within one slot, WATCH) and
    scripts moodring uses have the same signatures on both clients.
    """
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return cast(Redis, RedisCluster.from_url(url, **options))
    return Redis.from_url(url, **options)


def as_text(value: bytes | str | None) -> str:
    """A Redis reply (bytes, or str with ``decode_responses``) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
