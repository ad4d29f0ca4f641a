"""The submit side of the job queue: a submitter reserves room under the backlog cap, writes the
photo to the blob store, adds the job, waits for its answer and cleans up (the bot and
``moodring submit``, through :mod:`inference.api.client`)."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from inference.api.contract import Job, JobResult, image_key, inflight_key, result_key
from inference.api.errors import JobFailed, JobTimeout
from inference.api.stream_protocol import (
    RESERVE_HOLD_MS,
    TRANSIENT,
    WORKERS_KEY,
    StreamBase,
    reserved_key,
    waiting_key,
)

log = logging.getLogger(__name__)


class SubmitSide(StreamBase):
    """The calls a submitter makes."""

    async def lock_user(self, user_hash: str, job_id: str, ttl_s: int) -> bool:
        """One photo at a time per user; a stale lock (:meth:`lock_is_stale`) is taken over."""
        key = inflight_key(user_hash)
        if await self.redis.set(key, job_id, nx=True, ex=ttl_s):
            return True
        async with self.redis.pipeline(transaction=True) as pipe:  # one key
            pipe.get(key)
            pipe.pttl(key)
            holder, pttl = await pipe.execute()
        if holder is None:  # released meanwhile
            return bool(await self.redis.set(key, job_id, nx=True, ex=ttl_s))
        held_ms = ttl_s * 1000 - int(pttl) if int(pttl) > 0 else ttl_s * 1000
        if not await self.lock_is_stale(holder.decode(), held_ms):
            return False
        taken = bool(await self._take_over(keys=[key], args=[holder, job_id, ttl_s]))
        if taken:
            log.info("user %s: took over the lock of job %s (settled or gone)", user_hash, holder.decode())
        return taken

    async def submit(self, job: Job, image: bytes, ttl_s: int, max_backlog: int) -> bool:
        """Room first, then the photo (short TTL, in the blob store), then the job pointing to it.

        The job goes to the shard its id hashes to, or the next one with room. A shard's
        backlog check and the reservation are one script, so concurrent submitters can't push
        a shard past its share of ``max_backlog``, and no photo is written for a job that is
        refused: the photos held never exceed the cap. False: every shard is full.
        """
        n = len(self.streams)
        first = zlib.crc32(job.job_id.encode()) % n
        for i in range(n):
            stream = self.streams[(first + i) % n]
            reserved = await self._reserve(
                keys=[stream, reserved_key(stream)],
                args=[self.s.group, self._shard_cap(max_backlog), job.job_id, RESERVE_HOLD_MS],
            )
            if reserved:
                break
        else:
            return False
        try:
            async with self.blobs.pipeline(transaction=True) as pipe:  # one job: one slot
                pipe.set(job.image_key, image, ex=ttl_s)
                pipe.set(waiting_key(job.job_id), "1", ex=ttl_s)  # the caller waits; gone when it stops
                await pipe.execute()
        except BaseException:
            await self._release(stream, job.job_id)
            raise
        await self._add_reserved(
            keys=[stream, reserved_key(stream)],
            args=[job.job_id, self.s.stream_maxlen, job.model_dump_json()],
        )
        return True

    async def _release(self, stream: str, job_id: str) -> None:
        try:
            await self.redis.zrem(reserved_key(stream), job_id)
        except RedisError:  # it lapses after RESERVE_HOLD_MS anyway
            log.debug("could not release the reservation of job %s", job_id)

    async def wait_result(self, job_id: str, wait_s: float) -> JobResult:
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobTimeout(job_id)
            try:
                # short BLPOP slices stay below any client socket timeout and notice reconnects quickly
                item = await self.blobs.blpop([result_key(job_id)], timeout=max(1, min(int(left), 2)))
            except TRANSIENT:
                log.warning("redis unavailable while waiting for job %s; retrying", job_id)
                await asyncio.sleep(0.5)
                continue
            if item is not None:
                try:
                    return JobResult.model_validate_json(item[1])
                except ValidationError as exc:
                    # e.g. a worker of another result version during an upgrade (docs/architecture.md)
                    log.warning("job %s: its answer doesn't fit this contract (%s)", job_id, exc.title)
                    raise JobFailed("internal", "the worker answered in another contract version") from None

    async def cleanup(self, job_id: str, user_hash: str) -> None:
        """The caller is done with a job: its photo, answer and waiting mark go, and its lock."""
        lock = inflight_key(user_hash)
        try:
            await self.blobs.delete(image_key(job_id), result_key(job_id), waiting_key(job_id))
            if await self.redis.get(lock) == job_id.encode():
                await self.redis.delete(lock)
        except RedisError:
            log.warning("could not clean up job %s (keys expire by TTL)", job_id)

    async def workers_alive(self, within_s: float) -> int:
        """How many consumers beat in the last ``within_s`` seconds (one read, no scan)."""
        return int(await self.redis.zcount(WORKERS_KEY, time.time() - within_s, "+inf"))

    async def stale_locks(self, ttl_ms: int) -> int:
        """User locks ("one photo at a time") whose job is settled or gone, e.g. after a Redis
        restart (the doctor counts them; each clears at its user's next photo)."""
        stale = 0
        async for key in self.redis.scan_iter(match=inflight_key("*"), count=500):
            holder: Any = await self.redis.get(key)
            pttl = await self.redis.pttl(key)
            if holder is not None and await self.lock_is_stale(holder.decode(), ttl_ms - max(int(pttl), 0)):
                stale += 1
        return stale
