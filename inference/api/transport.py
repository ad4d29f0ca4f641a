"""The broker: every Redis Streams call of the job queue, behind one small :class:`Transport`.

Submitters and workers talk to the queue only through this module, so a broker swap (another
stream engine, a managed queue) is a new class here plus the line in :func:`open_transport`;
the worker's job handling (:mod:`inference.worker.service`) and the submit client
(:mod:`inference.api.client`) don't change.

Redis Streams semantics used: one consumer group; ``XREADGROUP COUNT BLOCK`` to read,
``XAUTOCLAIM`` to take over entries of a dead consumer, ``XACK`` + ``XDEL`` when done, a
dead-letter stream for entries delivered too often; results are ``RPUSH``ed to a per-job list
the submitter ``BLPOP``s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inference.api.contract import Job, JobResult, image_key, inflight_key, result_key
from inference.api.errors import JobTimeout
from inference.api.settings import QueueSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Transient broker failures: callers retry or wait for the broker to come back.
TRANSIENT: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


@dataclass(frozen=True, slots=True)
class Backlog:
    lag: int
    pending: int

    @property
    def total(self) -> int:
        return self.lag + self.pending


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queue entry handed to a worker; ``job`` is None when the entry is malformed."""

    entry_id: bytes
    job: Job | None
    deliveries: int = 1
    raw: bytes = b""


class Transport(Protocol):
    """What submitters and workers need from a broker."""

    async def ensure_group(self) -> None: ...
    async def backlog(self) -> Backlog: ...
    async def lock_user(self, user_hash: str, job_id: str, ttl_s: int) -> bool: ...
    async def submit(self, job: Job, image: bytes, ttl_s: int, max_backlog: int) -> bool: ...
    async def wait_result(self, job_id: str, wait_s: float) -> JobResult: ...
    async def cleanup(self, job_id: str, user_hash: str) -> None: ...
    async def heartbeat(self, consumer: str, ttl_s: int) -> None: ...
    async def workers_alive(self, within_s: float) -> int: ...
    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]: ...
    async def claim_stale(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]: ...
    async def images(self, jobs: Sequence[Job]) -> list[bytes | None]: ...
    async def finish(self, done: Sequence[tuple[Delivery, JobResult | None]]) -> None: ...
    async def dead_letter(
        self, consumer: str, delivery: Delivery, result: JobResult | None, reason: str = ...
    ) -> None: ...
    async def prune_consumers(self, keep: str, idle_ms: int) -> list[str]: ...


DEAD_LETTER_AGE_S = 7 * 86_400

# Answer a job once (KEYS: result list, done marker, photo, caller's waiting key; ARGV: result
# JSON, TTL). The first answer wins; none is stored when the caller has stopped waiting (gone,
# or timed out), so a late answer never leaves a heatmap behind. The photo goes either way.
ANSWER_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
redis.call('DEL', KEYS[3])
return 1
"""


def waiting_key(job_id: str) -> str:
    return f"moodring:waiting:{job_id}"


def done_key(job_id: str) -> str:
    return f"moodring:done:{job_id}"


# Atomic "add a job unless lag + pending of the group is at the cap" (KEYS[1] stream;
# ARGV group, cap, approximate max length, job JSON). Returns 1 when added.
ADD_IF_ROOM = """
local lag, pending = 0, 0
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, g in ipairs(groups) do
    local name, l, p
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1]
      elseif g[i] == 'lag' then l = g[i + 1]
      elseif g[i] == 'pending' then p = g[i + 1] end
    end
    if name == ARGV[1] then
      pending = tonumber(p) or 0
      if l then lag = tonumber(l) else lag = redis.call('XLEN', KEYS[1]) end
    end
  end
end
if lag + pending >= tonumber(ARGV[2]) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'job', ARGV[4])
return 1
"""
WORKERS_KEY = "moodring:workers"  # sorted set: consumer -> time of its last heartbeat


def heartbeat_key(consumer: str) -> str:
    """Per-consumer liveness key; consumer names start with the host name."""
    return f"moodring:worker:{consumer}"


def parse_job(raw: bytes | None) -> Job | None:
    if raw is None:
        return None
    try:
        return Job.model_validate_json(raw)
    except ValueError:
        log.error("malformed job entry (%d bytes)", len(raw))
        return None


async def retry_transient(fn: Callable[[], Awaitable[T]], attempts: int = 20, pause_s: float = 0.25) -> T:
    """Call ``fn``, retrying transient broker failures ``attempts`` times."""
    for i in range(attempts):
        try:
            return await fn()
        except TRANSIENT:
            if i == attempts - 1:
                raise
            await asyncio.sleep(pause_s)
    raise AssertionError("unreachable")


class StreamTransport:
    """The job queue on Redis Streams (one stream, one consumer group, a dead-letter stream).

    Photo and result bytes (the heatmap is a copy of the photo) go to ``blobs``: a Redis run
    without persistence, so no photo ever reaches a disk (``MOODRING_BLOB_REDIS_URL``; compose's
    ``redis-blobs``). Jobs, acks and dead letters stay in ``redis``, which may persist (AOF).
    Without ``blobs`` both live in ``redis``, in one transaction.
    """

    def __init__(
        self, redis: Redis, settings: QueueSettings, dead_letter_stream: str = "", blobs: Redis | None = None
    ) -> None:
        self.redis = redis
        self.blobs = blobs or redis
        self.s = settings
        self.dead_stream = dead_letter_stream or f"{settings.stream}:dead"
        self._add_if_room = redis.register_script(ADD_IF_ROOM)
        self._answer_once = self.blobs.register_script(ANSWER_ONCE)

    # both sides ---------------------------------------------------------------------
    async def ensure_group(self) -> None:
        """Create the stream and its consumer group if they don't exist (idempotent)."""
        try:
            await self.redis.xgroup_create(self.s.stream, self.s.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def backlog(self) -> Backlog:
        """Entries not yet delivered (lag) plus delivered but unacknowledged (pending)."""
        try:
            groups = await self.redis.xinfo_groups(self.s.stream)
        except ResponseError:
            return Backlog(0, 0)
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == self.s.group:
                lag = g.get("lag")
                if lag is None:  # Redis could not compute it: fall back to stream length
                    lag = await self.redis.xlen(self.s.stream)
                return Backlog(int(lag), int(g.get("pending", 0)))
        return Backlog(await self.redis.xlen(self.s.stream), 0)

    # submit side --------------------------------------------------------------------
    async def lock_user(self, user_hash: str, job_id: str, ttl_s: int) -> bool:
        return bool(await self.redis.set(inflight_key(user_hash), job_id, nx=True, ex=ttl_s))

    async def submit(self, job: Job, image: bytes, ttl_s: int, max_backlog: int) -> bool:
        """The photo first (short TTL, in the blob store), then the job that points to it.

        The backlog check and the ``XADD`` are one script, so concurrent submitters can't push
        the queue past ``max_backlog``. False (and the photo deleted again): the queue is full.
        """
        async with self.blobs.pipeline(transaction=True) as pipe:
            pipe.set(job.image_key, image, ex=ttl_s)
            pipe.set(waiting_key(job.job_id), "1", ex=ttl_s)  # the caller waits; gone when it stops
            await pipe.execute()
        added = await self._add_if_room(
            keys=[self.s.stream],
            args=[self.s.group, max_backlog, self.s.stream_maxlen, job.model_dump_json()],
        )
        if not added:
            await self.blobs.delete(job.image_key, waiting_key(job.job_id))
        return bool(added)

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
                return JobResult.model_validate_json(item[1])

    async def cleanup(self, job_id: str, user_hash: str) -> None:
        """The caller is done with a job: its photo, answer and waiting mark go, and its lock."""
        lock = inflight_key(user_hash)
        try:
            await self.blobs.delete(image_key(job_id), result_key(job_id), waiting_key(job_id))
            if await self.redis.get(lock) == job_id.encode():
                await self.redis.delete(lock)
        except RedisError:
            log.warning("could not clean up job %s (keys expire by TTL)", job_id)

    # worker side --------------------------------------------------------------------
    async def heartbeat(self, consumer: str, ttl_s: int) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(heartbeat_key(consumer), str(now), ex=ttl_s)
            pipe.zadd(WORKERS_KEY, {consumer: now})
            pipe.zremrangebyscore(WORKERS_KEY, 0, now - 86_400)  # consumers gone for a day
            await pipe.execute()

    async def workers_alive(self, within_s: float) -> int:
        """How many consumers beat in the last ``within_s`` seconds (one read, no scan)."""
        return int(await self.redis.zcount(WORKERS_KEY, time.time() - within_s, "+inf"))

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        resp: Any = await self.redis.xreadgroup(  # redis-py's response type is a loose union
            self.s.group, consumer, {self.s.stream: ">"}, count=count, block=block_ms
        )
        if not resp:
            return []
        return [
            Delivery(eid, parse_job(fields.get(b"job")), 1, fields.get(b"job", b""))
            for eid, fields in resp[0][1]
            if fields
        ]

    async def claim_stale(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        """Take over entries whose consumer died (idle > ``idle_ms``), with their delivery counts."""
        _, claimed, _deleted = await self.redis.xautoclaim(
            self.s.stream, self.s.group, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
        )
        if not claimed:
            return []
        ids = [eid for eid, _ in claimed]
        info = await self.redis.xpending_range(
            self.s.stream, self.s.group, min=ids[0], max=ids[-1], count=len(ids) * 4, consumername=consumer
        )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in info}
        out = []
        for eid, fields in claimed:
            if not fields:  # entry deleted meanwhile
                await self.redis.xack(self.s.stream, self.s.group, eid)
                continue
            raw = fields.get(b"job", b"")
            out.append(Delivery(eid, parse_job(raw), deliveries.get(eid, 1 << 30), raw))
        return out

    async def images(self, jobs: Sequence[Job]) -> list[bytes | None]:
        if not jobs:
            return []
        found: list[Any] = await self.blobs.mget([job.image_key for job in jobs])
        return [bytes(v) if v else None for v in found]

    async def finish(self, done: Sequence[tuple[Delivery, JobResult | None]]) -> None:
        """Per entry: push the result (TTL) if any, delete the photo, then ack and delete the entry."""
        if done:
            await self._settle(done)

    async def dead_letter(
        self, consumer: str, delivery: Delivery, result: JobResult | None, reason: str = "deliveries"
    ) -> None:
        """Move an entry to the dead-letter stream, answering its caller with ``result``."""
        # No user hash in a dead letter: it would outlive /mood forget. The job without it is
        # enough to debug; a malformed entry keeps only its size.
        job = delivery.job.model_copy(update={"user_hash": ""}).model_dump_json() if delivery.job else ""
        record = {
            "job": job,
            "malformed_bytes": 0 if delivery.job else len(delivery.raw),
            "entry": delivery.entry_id,
            "deliveries": delivery.deliveries,
            "worker": consumer,
            "reason": reason,
        }
        await self._settle([(delivery, result)], dead=record)

    async def _settle(
        self, done: Sequence[tuple[Delivery, JobResult | None]], dead: dict[str, Any] | None = None
    ) -> None:
        """Answers (once each) and photo deletions first, then the acks (and the dead letter).

        A crash between the two leaves the entry unacknowledged: it is claimed again, and its
        second answer is dropped by the done marker; nothing is lost, nothing answered twice.
        """
        async with self.blobs.pipeline(transaction=False) as blob:
            for d, res in done:
                if d.job is None:
                    continue
                if res is None:  # nobody is waiting for an answer any more
                    blob.delete(d.job.image_key)
                    continue
                job_id = d.job.job_id
                await self._answer_once(
                    keys=[result_key(job_id), done_key(job_id), d.job.image_key, waiting_key(job_id)],
                    args=[res.model_dump_json(), self.s.result_ttl_s],
                    client=blob,
                )
            await blob.execute()
        async with self.redis.pipeline(transaction=True) as pipe:
            self._acks(pipe, done, dead)
            await pipe.execute()

    def _acks(
        self, pipe: Any, done: Sequence[tuple[Delivery, JobResult | None]], dead: dict[str, Any] | None
    ) -> None:
        if dead is not None:  # bounded in length and in age (a week)
            pipe.xadd(self.dead_stream, dead, maxlen=10_000, approximate=True)
            pipe.xtrim(self.dead_stream, minid=f"{int((time.time() - DEAD_LETTER_AGE_S) * 1000)}-0")
        for d, _ in done:
            pipe.xack(self.s.stream, self.s.group, d.entry_id)
            pipe.xdel(self.s.stream, d.entry_id)

    async def prune_consumers(self, keep: str, idle_ms: int) -> list[str]:
        """Remove consumers idle longer than ``idle_ms`` with nothing pending (dead workers)."""
        try:
            consumers = await self.redis.xinfo_consumers(self.s.stream, self.s.group)
        except ResponseError:
            return []
        gone = []
        for c in consumers:
            name = c["name"].decode() if isinstance(c["name"], bytes) else str(c["name"])
            if name != keep and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
                await self.redis.xgroup_delconsumer(self.s.stream, self.s.group, name)
                gone.append(name)
        return gone

    async def recent_heartbeats(self, host: str) -> list[float]:
        """Heartbeat times of this host's consumers (container health check)."""
        keys = [k async for k in self.redis.scan_iter(match=heartbeat_key(f"{host}-*"), count=1000)]
        return [float(v) for v in await self.redis.mget(keys) if v is not None] if keys else []


def connect_blobs(settings: QueueSettings, **options: Any) -> Redis | None:
    """A client for the blob store when one is configured (the caller closes it), else None."""
    return Redis.from_url(settings.blob_redis_url, **options) if settings.blob_redis_url else None


def open_transport(
    redis: Redis, settings: QueueSettings, dead_letter_stream: str = "", blobs: Redis | None = None
) -> StreamTransport:
    """The broker every process uses; the one place that picks it."""
    return StreamTransport(redis, settings, dead_letter_stream, blobs)
