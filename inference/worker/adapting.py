"""The worker's side of the community adapter: follow the active version, refit on a schedule.

Every ``adapt_poll_s`` a worker reads which version is active (one GET) and, when it changed,
loads it: a new fit or a rollback reaches every worker within seconds, with no restart. An adapter
that doesn't fit the served model (other classes, another projection) is refused with one error
line and readings stay the model's own. Every minute a worker also looks whether a refit is due
(``adapt_every_s`` since the last one, or ``adapt_withdrawn_s`` after a contributor withdrew); the
fitter's Redis lock makes sure only one worker of a deployment fits at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from inference.api.community import AdapterRegistry
from inference.serve.adapter import Adapter, AdapterError
from inference.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

SCHEDULE_CHECK_S = 60.0


class AdapterFollower:
    """Holds the adapter the worker applies now, in step with Redis."""

    def __init__(
        self,
        redis: Redis,
        settings: WorkerSettings,
        classes: Sequence[str],
        projection_sha256: str,
        dims: int,
        name: str,
    ) -> None:
        self.redis = redis
        self.registry = AdapterRegistry(redis)
        self.s = settings
        self.classes = tuple(classes)
        self.projection_sha256 = projection_sha256
        self.dims = dims  # projected features per face (0: the model has no projection)
        self.name = name
        self.adapter: Adapter | None = None
        self.version = ""  # the active version last seen ("" none)
        self._next_poll = 0.0
        self._next_schedule = 0.0
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> None:
        """Load the active version if it changed since the last look."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + self.s.adapt_poll_s
        version = await self.registry.active_version() or ""
        if version == self.version:
            return
        self.version = version
        if not version:
            if self.adapter is not None:
                log.info("community adapter off: readings are the model's own")
            self.adapter = None
            return
        text = await self.registry.get(version)
        try:
            if text is None:
                raise AdapterError(f"version {version} is not stored")
            adapter = Adapter.from_json(text)
            adapter.check(self.classes, self.projection_sha256)
        except AdapterError as exc:
            log.error("community adapter %s not applied: %s", version, exc)
            self.adapter = None
            return
        self.adapter = adapter
        log.info("community adapter %s active", version)

    async def maybe_refit(self) -> None:
        """Start the scheduled refit in the background when it is due (one at a time)."""
        if self.s.adapt_every_s <= 0 or (self._task is not None and not self._task.done()):
            return
        now = time.monotonic()
        if now < self._next_schedule:
            return
        self._next_schedule = now + min(SCHEDULE_CHECK_S, self.s.adapt_every_s)
        last = await self.registry.last_fit() or 0.0
        since = time.time() - last
        due = since >= self.s.adapt_every_s
        if not due and since >= self.s.adapt_withdrawn_s:
            due = await self.registry.withdrawn() > 0
        if due:
            self._task = asyncio.create_task(self._refit(), name="adapter-refit")

    async def _refit(self) -> None:
        from dataclasses import replace

        from inference.training.adapt import Policy
        from inference.training.community import ModelInfo, refit

        policy = replace(Policy(), min_people=self.s.adapt_min_people, margin=self.s.adapt_margin)
        info = ModelInfo(self.classes, self.dims, self.projection_sha256)
        try:
            result = await refit(self.redis, info, policy, owner=self.name)
        except Exception:
            log.exception("scheduled community adapter fit failed")
            return
        log.info("scheduled community adapter fit: %s", result.message)
        self._next_poll = 0.0  # look at the outcome at once

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
