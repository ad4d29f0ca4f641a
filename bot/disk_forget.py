"""Forget reaches the disk: after `/mood forget` the durable Redis rewrites its files within a bound.

Deleting a user's keys removes them from memory at once, but an append-only file still holds
the writes that made them (history entries, labels, session commands with the raw Discord id)
until Redis rewrites it, which by default waits for the file to double and pass 64 MB: on a quiet
server, never. So each forget marks a rewrite as owed, and any bot process starts one (an AOF
rewrite, and a snapshot where save points are configured) as soon as none ran in the last
``MOODRING_FORGET_REWRITE_S``. A rewrite starts from the data as it is after the forget, and
Redis deletes the old files once the new ones are written. ``/mood privacy`` states the bound.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

OWED_KEY = "moodring:forget:rewrite-owed"  # set after a forget's deletions, cleared when one starts
GATE_KEY = "moodring:forget:rewrite-gate"  # one rewrite per interval, across bot processes
TICK_S = 30.0  # how often each bot process looks for an owed rewrite


def bound_s(every_s: float) -> float:
    """The longest a forgotten user's writes stay in Redis's files: the interval, one tick and
    the rewrite itself (seconds for a bot's dataset; allowed a minute)."""
    return every_s + TICK_S + 60.0


class DiskForget:
    """Owes and starts the rewrites; ``compact`` is safe to call from every bot process."""

    def __init__(self, redis: Redis, every_s: float) -> None:
        self.redis = redis
        self.every_s = every_s

    async def forgotten(self) -> None:
        """A user's keys were just deleted: a rewrite is owed; start it now if the gate allows."""
        await self.redis.set(OWED_KEY, str(time.time()))
        await self.compact()

    async def compact(self) -> bool:
        """Start the owed rewrite unless one started within ``every_s``; True if one started.

        The owed mark is cleared before the rewrite forks, so a forget that lands meanwhile
        marks it again (its deletions may be newer than the fork) and gets a rewrite of its own.
        """
        if not await self.redis.exists(OWED_KEY):
            return False
        if not await self.redis.set(GATE_KEY, "1", nx=True, ex=max(1, round(self.every_s))):
            return False
        await self.redis.delete(OWED_KEY)
        try:
            started = await self._rewrite()
        except RedisError as exc:  # one in progress (forked before the forget), or not allowed here
            log.warning("could not start the rewrite owed after a forget (%s); trying again", exc)
            await self.redis.set(OWED_KEY, str(time.time()))
            await self.redis.delete(GATE_KEY)
            return False
        if started:
            log.info("started %s after a forget", " and ".join(started))
        return bool(started)

    async def _rewrite(self) -> list[str]:
        if isinstance(self.redis, RedisCluster):  # every node keeps its own files
            await self.redis.execute_command(  # type: ignore[no-untyped-call]
                "BGREWRITEAOF", target_nodes=RedisCluster.ALL_NODES
            )
            return ["AOF rewrites on every node"]
        started = []
        persistence: dict[str, Any] = await self.redis.info("persistence")
        if int(persistence.get("aof_enabled", 0)):
            await self.redis.bgrewriteaof()
            started.append("an AOF rewrite")
        if await self._saves_snapshots():
            await self.redis.bgsave(schedule=True)  # after the rewrite, if one runs
            started.append("a snapshot")
        return started

    async def _saves_snapshots(self) -> bool:
        try:
            config: Any = await self.redis.config_get("save")
        except RedisError:  # CONFIG renamed or refused (managed Redis): no way to tell, none taken
            return False
        return bool(str(config.get("save", "")).strip())
