"""Per-server controls (``/moodring server``, ``/moodring watch``): plain Redis, no Discord.

A server's settings live under its own hash tag, ``moodring:guild:{<guild id>}:…`` (one cluster
slot): ``settings`` (hash: enabled, sessions, watch, strategy) and ``watch`` (set of channel
ids whose photos get a reading). Missing fields mean the defaults: everything on, no default
strategy. Nothing here names a user.

Why a server switch: the EU AI Act (Art. 5(1)(f), in force since 2 February 2025) forbids
emotion recognition in workplaces and schools. A server that is either turns moodring off with
``/moodring server enabled:False``; ``/mood forget`` still works there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from inference.api.connect import as_text

STRATEGIES = ("match", "lift", "calm")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    enabled: bool = True
    sessions: bool = True
    watch: bool = True
    strategy: str | None = None  # the default when a user picks none


def guild_prefix(guild_id: int) -> str:
    return f"moodring:guild:{{{guild_id}}}"


class Guilds:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def _k(self, guild_id: int, name: str) -> str:
        return f"{guild_prefix(guild_id)}:{name}"

    async def get(self, guild_id: int | None) -> ServerSettings:
        """The server's settings (the defaults outside servers: DMs and group DMs)."""
        if guild_id is None:
            return ServerSettings()
        raw = {
            as_text(k): as_text(v)
            for k, v in (await self.redis.hgetall(self._k(guild_id, "settings"))).items()
        }
        return ServerSettings(
            enabled=raw.get("enabled", "1") == "1",
            sessions=raw.get("sessions", "1") == "1",
            watch=raw.get("watch", "1") == "1",
            strategy=raw.get("strategy") or None,
        )

    async def update(
        self,
        guild_id: int,
        *,
        enabled: bool | None = None,
        sessions: bool | None = None,
        watch: bool | None = None,
        strategy: str | None = None,
    ) -> ServerSettings:
        """Change the given settings (``strategy="none"`` clears the default) and return them all."""
        fields: dict[Any, Any] = {}
        for name, value in (("enabled", enabled), ("sessions", sessions), ("watch", watch)):
            if value is not None:
                fields[name] = "1" if value else "0"
        key = self._k(guild_id, "settings")
        if strategy == "none":
            await self.redis.hdel(key, "strategy")
        elif strategy is not None:
            if strategy not in STRATEGIES:
                raise ValueError(f"unknown strategy {strategy!r}")
            fields["strategy"] = strategy
        if fields:
            await self.redis.hset(key, mapping=fields)
        return await self.get(guild_id)

    # watched channels ------------------------------------------------------------------------
    async def watch_channel(self, guild_id: int, channel_id: int, on: bool) -> None:
        key = self._k(guild_id, "watch")
        if on:
            await self.redis.sadd(key, str(channel_id))
        else:
            await self.redis.srem(key, str(channel_id))

    async def watched(self, guild_id: int) -> list[int]:
        return sorted(int(c) for c in await self.redis.smembers(self._k(guild_id, "watch")))

    async def is_watched(self, guild_id: int | None, channel_id: int) -> bool:
        if guild_id is None:
            return False
        return bool(await self.redis.sismember(self._k(guild_id, "watch"), str(channel_id)))
