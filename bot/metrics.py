"""Prometheus metrics of a bot process, served on ``MOODRING_BOT_METRICS_PORT`` when it is set.

What users meet (interactions by command and outcome, time to the reply, checks refused and
why, Discord rate limits, errors by type) and the system as the bot sees it, refreshed every
``REFRESH_S``: workers alive, dead letters, and each Redis node's memory and persistence (the
alert rules in ``monitoring/`` read these; no exporter besides moodring's own is needed).
Every shard process exports the same system gauges: rules take their ``max``.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from redis.asyncio import Redis

from inference.api.health import node_facts
from inference.api.transport import Transport

log = logging.getLogger(__name__)

REFRESH_S = 15.0
REPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30)
T0 = "moodring_t0"  # in ``interaction.extras``: when this process started handling it


class BotMetrics:
    """Counters and gauges of one bot process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.interactions = Counter(
            "moodring_bot_interactions",
            "Slash commands, context menus and components handled, by name and outcome "
            "(ok, refused: not the user's button or switched off here, error)",
            ["command", "outcome"],
            registry=r,
        )
        self.reply = Histogram(
            "moodring_bot_reply_seconds",
            "From the interaction reaching the bot to the end of its handler (the reply sent)",
            ["command"],
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.checks = Counter(
            "moodring_bot_checks",
            "Mood checks by outcome: ok, or the reason it was refused or failed "
            "(consent, cooldown, busy, unavailable, timeout, no_face, ...)",
            ["outcome"],
            registry=r,
        )
        self.rate_limits = Counter(
            "moodring_bot_rate_limits",
            "Discord answered 429, by scope (user, global, shared)",
            ["scope"],
            registry=r,
        )
        self.errors = Counter(
            "moodring_bot_errors", "Unhandled errors by exception type", ["type"], registry=r
        )
        self.workers_alive = Gauge(
            "moodring_workers_alive", "Workers that beat within MOODRING_WORKER_ALIVE_S", registry=r
        )
        self.dead_letter_entries = Gauge(
            "moodring_dead_letter_entries", "Entries in the dead-letter streams (kept a week)", registry=r
        )
        self.redis_used = Gauge(
            "moodring_redis_memory_used_bytes", "Redis used_memory", ["role", "node"], registry=r
        )
        self.redis_max = Gauge(
            "moodring_redis_memory_max_bytes", "Redis maxmemory (0: no limit)", ["role", "node"], registry=r
        )
        self.redis_persisting = Gauge(
            "moodring_redis_persisting",
            "1 when the node writes its data to disk (AOF or snapshot save points)",
            ["role", "node"],
            registry=r,
        )
        self.refreshed = Gauge(
            "moodring_bot_refresh_timestamp_seconds", "When the system gauges were last read", registry=r
        )

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
        log.info("bot metrics on :%d/metrics", port)

    # interactions -------------------------------------------------------------------------
    @staticmethod
    def started(interaction: discord.Interaction) -> None:
        interaction.extras.setdefault(T0, time.perf_counter())

    def finished(self, interaction: discord.Interaction, command: str, outcome: str) -> None:
        self.interactions.labels(command, outcome).inc()
        t0 = interaction.extras.get(T0)
        if t0 is not None and outcome != "refused":
            self.reply.labels(command).observe(time.perf_counter() - t0)

    def check(self, outcome: str | None) -> None:
        self.checks.labels(outcome or "ok").inc()

    def error(self, exc: BaseException) -> None:
        self.errors.labels(type(exc).__name__).inc()

    def http_trace(self) -> aiohttp.TraceConfig:
        """Passed to discord.py's client: counts every 429 its REST calls get back."""
        trace = aiohttp.TraceConfig()

        async def on_end(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status == 429:
                scope = params.response.headers.get("X-RateLimit-Scope", "user")
                self.rate_limits.labels(
                    "global" if params.response.headers.get("X-RateLimit-Global") else scope
                ).inc()

        trace.on_request_end.append(on_end)
        return trace

    # the system ---------------------------------------------------------------------------
    async def refresh(self, queue: Transport, alive_s: float, redis: Redis, blobs: Redis | None) -> None:
        """Read workers, dead letters and every Redis node's memory and persistence."""
        self.workers_alive.set(len(await queue.alive_workers(alive_s)))
        self.dead_letter_entries.set(await queue.dead_letter_count())
        for role, client in (("durable", redis), ("blobs", blobs or redis)):  # no blob Redis: the main one
            for n in await node_facts(client):
                self.redis_used.labels(role, n.node).set(n.used_bytes)
                self.redis_max.labels(role, n.node).set(n.max_bytes)
                self.redis_persisting.labels(role, n.node).set(int(n.persisting))
        self.refreshed.set(time.time())
