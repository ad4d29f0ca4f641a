"""The broker: every Redis Streams call of the job queue, behind one small :class:`Transport`.

Submitters and workers talk to the queue only through this module, so a broker swap (another
stream engine, a managed queue) is a new class here plus the line in :func:`open_transport`;
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

import asyncio
import json
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inference.api.connect import connect
from inference.api.contract import (
    JOB_ID_PATTERN,
    Job,
    JobResult,
    image_key,
    inflight_key,
    job_key,
    result_key,
)
from inference.api.errors import JobFailed, JobTimeout
from inference.api.settings import QueueSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Transient broker failures: callers retry or wait for the broker to come back. On a cluster
# that includes a failover in progress (CLUSTERDOWN, TRYAGAIN) and no node answering the
# topology query (redis-py's RedisClusterException, which is not a RedisError).
TRANSIENT: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
)


@dataclass(frozen=True, slots=True)
class Backlog:
    lag: int
    pending: int

    @property
    def total(self) -> int:
        return self.lag + self.pending


@dataclass(frozen=True, slots=True)
class Delivery:
    """One queue entry handed to a worker.

    ``job`` is None when the entry is not a valid job: ``problem`` says why, and ``job_id`` is
    its id when one could be read (its caller is then answered with a typed refusal).
    """

    entry_id: bytes
    job: Job | None
    stream: str  # the shard it came from
    deliveries: int = 1
    raw: bytes = b""
    problem: str = ""
    job_id: str = ""

    @property
    def answer_to(self) -> str:
        """The job id an answer goes to ("" none)."""
        return self.job.job_id if self.job is not None else self.job_id


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a worker found for one job before computing: its photo, or why there is none."""

    photo: bytes | None = None
    answered: bool = False  # the job's done marker is set: a re-run of an answered job
    problem: str = ""  # the photo key could not be read (e.g. WRONGTYPE): the job's own fault


class Transport(Protocol):
    """What submitters and workers need from a broker."""

    async def ensure_group(self) -> None: ...
    async def backlog(self) -> Backlog: ...
    async def lock_user(self, user_hash: str, job_id: str, ttl_s: int) -> bool: ...
    async def submit(self, job: Job, image: bytes, ttl_s: int, max_backlog: int) -> bool: ...
    async def wait_result(self, job_id: str, wait_s: float) -> JobResult: ...
    async def cleanup(self, job_id: str, user_hash: str) -> None: ...
    async def heartbeat(self, consumer: str) -> None: ...
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


DEAD_LETTER_AGE_S = 7 * 86_400

# Answer a job once (KEYS: result list, done marker, photo, caller's waiting key; ARGV: result
# JSON, TTL). The first answer wins; none is stored when the caller has stopped waiting (gone,
# or timed out), so a late answer never leaves a heatmap behind. The photo goes either way, and
# first: a result key of the wrong type fails the RPUSH, never the deletion.
ANSWER_ONCE = """
redis.call('DEL', KEYS[3])
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


def waiting_key(job_id: str) -> str:
    return job_key(job_id, "waiting")


def done_key(job_id: str) -> str:
    return job_key(job_id, "done")


def shard_tag(index: int, shards: int) -> str:
    """A hash tag whose slot lies in the ``index``-th of ``shards`` equal parts of the slot range.

    Deterministic, so every process names the same streams; ``redis-cli --cluster create``
    gives master i the i-th part, so N shards on N masters land one per master.
    """
    lo = index * REDIS_CLUSTER_HASH_SLOTS // shards
    hi = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    k = 0
    while not lo <= key_slot(f"q{index}.{k}".encode()) < hi:
        k += 1
    return f"q{index}.{k}"


def shard_streams(stream: str, shards: int, cluster: bool) -> list[str]:
    """The job streams: ``stream`` itself for one shard on one Redis, else tagged shards."""
    if shards == 1 and not cluster:
        return [stream]
    return [f"{stream}:{{{shard_tag(i, shards)}}}" for i in range(shards)]


# A shard's backlog as the group sees it: lag (not yet delivered) + pending (delivered, not yet
# acknowledged), and the photo slots reserved by submitters still writing their photo.
_BACKLOG_LUA = """
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
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = redis.call('ZCARD', KEYS[2])
"""

# Reserve room for one job's photo unless the shard is at its cap (KEYS[1] stream, KEYS[2] its
# reservations; ARGV group, cap, job id, hold ms). Returns 1 when reserved. The photo is written
# only after this, so photos held never exceed the cap, however many submitters race.
RESERVE_IF_ROOM = (
    _BACKLOG_LUA
    + """
if lag + pending + held >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
"""
)

# Turn a reservation into the job's entry (KEYS[1] stream, KEYS[2] reservations; ARGV job id,
# approximate max length, job JSON).
ADD_RESERVED = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'job', ARGV[3])
return 1
"""

# How long a reservation holds while its photo is written (a submitter that dies meanwhile
# gives its slot back after this).
RESERVE_HOLD_MS = 10_000

WORKERS_KEY = "moodring:workers"  # sorted set: consumer -> time of its last heartbeat


def reserved_key(stream: str) -> str:
    """A shard's photo reservations (a sorted set beside it, on its slot)."""
    return f"{stream}:reserved"


_JOB_ID = re.compile(JOB_ID_PATTERN)


def parse_job(raw: bytes | None) -> tuple[Job | None, str, str]:
    """An entry's job, or None with why, and its id when one can be read (to answer it)."""
    if raw is None:
        return None, "no job field", ""
    try:
        return Job.model_validate_json(raw), "", ""
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        problem = f"invalid: {where + ': ' if where else ''}{err['msg']}"[:200]
    try:
        fields = json.loads(raw)
    except ValueError:
        fields = None
    job_id = fields.get("job_id") if isinstance(fields, dict) else None
    known = job_id if isinstance(job_id, str) and _JOB_ID.match(job_id) else ""
    if fields is None:
        problem = "malformed"
    log.error("job entry refused (%d bytes): %s", len(raw), problem)
    return None, problem, known


def _delivery(eid: bytes, raw: bytes, stream: str, deliveries: int) -> Delivery:
    job, problem, job_id = parse_job(raw)
    return Delivery(eid, job, stream, deliveries, raw, problem, job_id)


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
    """The job queue on Redis Streams (N shard streams, one consumer group, dead-letter streams).

    Photo and result bytes (the heatmap is a copy of the photo) go to ``blobs``: a Redis run
    without persistence, so no photo ever reaches a disk (``MOODRING_BLOB_REDIS_URL``; compose's
    ``redis-blobs``). Jobs, acks and dead letters stay in ``redis``, which may persist (AOF).
    Without ``blobs`` both live in ``redis``.
    """

    def __init__(
        self, redis: Redis, settings: QueueSettings, dead_letter_stream: str = "", blobs: Redis | None = None
    ) -> None:
        self.redis = redis
        self.blobs = blobs or redis
        self.s = settings
        self.cluster = settings.redis_cluster
        self.streams = shard_streams(settings.stream, settings.queue_shards, self.cluster)
        if len(self.streams) == 1 and not self.cluster:
            self.dead = {self.streams[0]: dead_letter_stream or f"{settings.stream}:dead"}
        else:  # beside its shard, on its slot
            self.dead = {s: f"{s}:dead" for s in self.streams}
        self._next = 0  # the shard a worker reads first (rotates, so none starves)
        self._reserve = redis.register_script(RESERVE_IF_ROOM)
        self._add_reserved = redis.register_script(ADD_RESERVED)
        self._answer_once = self.blobs.register_script(ANSWER_ONCE)

    def _shard_cap(self, max_backlog: int) -> int:
        return -(-max_backlog // len(self.streams))

    # both sides ---------------------------------------------------------------------
    async def ensure_group(self) -> None:
        """Create the streams and their consumer group if they don't exist (idempotent)."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.s.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def backlog(self) -> Backlog:
        """Entries not yet delivered (lag) plus delivered but unacknowledged (pending), all shards."""
        lag = pending = 0
        for stream in self.streams:
            one = await self._backlog(stream)
            lag += one.lag
            pending += one.pending
        return Backlog(lag, pending)

    async def _backlog(self, stream: str) -> Backlog:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return Backlog(0, 0)
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == self.s.group:
                lag = g.get("lag")
                if lag is None:  # Redis could not compute it: fall back to stream length
                    lag = await self.redis.xlen(stream)
                return Backlog(int(lag), int(g.get("pending", 0)))
        return Backlog(await self.redis.xlen(stream), 0)

    # submit side --------------------------------------------------------------------
    async def lock_user(self, user_hash: str, job_id: str, ttl_s: int) -> bool:
        return bool(await self.redis.set(inflight_key(user_hash), job_id, nx=True, ex=ttl_s))

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

    # worker side --------------------------------------------------------------------
    async def heartbeat(self, consumer: str) -> None:
        """Beat in the workers' sorted set (consumer → time); gone for a day: dropped."""
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:  # one key
            pipe.zadd(WORKERS_KEY, {consumer: now})
            pipe.zremrangebyscore(WORKERS_KEY, 0, now - 86_400)
            await pipe.execute()

    async def workers_alive(self, within_s: float) -> int:
        """How many consumers beat in the last ``within_s`` seconds (one read, no scan)."""
        return int(await self.redis.zcount(WORKERS_KEY, time.time() - within_s, "+inf"))

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """Up to ``count`` new entries from the shards, waiting up to ``block_ms`` when all are empty.

        One shard: one blocking ``XREADGROUP``. Several: a non-blocking pass over the shards
        (starting from a rotating one, so none starves), then, when nothing was there, one
        blocking read: over all shards on one Redis; on a cluster, where one command can't span
        slots, on one rotating shard for a short slice (a job on another shard waits at most that).
        """
        if len(self.streams) == 1:
            return await self._read({self.streams[0]: ">"}, consumer, count, block_ms)
        n = len(self.streams)
        start, self._next = self._next, (self._next + 1) % n
        out: list[Delivery] = []
        for i in range(n):
            got = await self._read({self.streams[(start + i) % n]: ">"}, consumer, count - len(out), None)
            out += got
            if len(out) >= count:
                return out
        if out:
            return out
        if not self.cluster:
            return await self._read(dict.fromkeys(self.streams, ">"), consumer, max(1, count // n), block_ms)
        return await self._read({self.streams[start]: ">"}, consumer, count, min(block_ms, 50))

    async def _read(
        self, streams: dict[Any, Any], consumer: str, count: int, block_ms: int | None
    ) -> list[Delivery]:
        resp: Any  # redis-py's response type is a loose union
        if self.cluster:
            resp = await self._read_on_node(next(iter(streams)), consumer, count, block_ms)
        else:
            resp = await self.redis.xreadgroup(self.s.group, consumer, streams, count=count, block=block_ms)
        out = []
        for stream, entries in resp or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            out += [_delivery(eid, fields.get(b"job"), name, 1) for eid, fields in entries if fields]
        return out

    async def _read_on_node(self, stream: str, consumer: str, count: int, block_ms: int | None) -> Any:
        """XREADGROUP on one shard, sent straight to the master that owns its slot.

        redis-py finds XREADGROUP's keys with a ``COMMAND GETKEYS`` round trip to its default
        node; when that node is a master that just died, every read fails until the client is
        rebuilt (seen in the failover test). Routing by the stream's slot skips that lookup (and
        its round trip); a dead owner raises a connection error that refreshes the slot map.
        """
        node = self.redis.get_node_from_key(stream)  # type: ignore[attr-defined]
        args: list[Any] = ["XREADGROUP", "GROUP", self.s.group, consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        run: Any = self.redis.execute_command  # untyped in redis-py
        return await run(*args, "STREAMS", stream, ">", target_nodes=node)

    async def recover(self) -> None:
        """After a transient failure: on a cluster, stop using a default node that may be dead."""
        replace = getattr(self.redis, "replace_default_node", None)
        if self.cluster and replace is not None:
            try:
                replace()
            except Exception:
                log.debug("could not replace the cluster's default node", exc_info=True)

    async def claim_stale(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        """Take over entries whose consumer died (idle > ``idle_ms``), with their delivery counts."""
        out: list[Delivery] = []
        for stream in self.streams:
            if len(out) >= count:
                break
            out += await self._claim(stream, consumer, idle_ms, count - len(out))
        return out

    async def _claim(self, stream: str, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        _, claimed, _deleted = await self.redis.xautoclaim(
            stream, self.s.group, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
        )
        if not claimed:
            return []
        ids = [eid for eid, _ in claimed]
        info = await self.redis.xpending_range(
            stream, self.s.group, min=ids[0], max=ids[-1], count=len(ids) * 4, consumername=consumer
        )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in info}
        out = []
        for eid, fields in claimed:
            if not fields:  # entry deleted meanwhile
                await self.redis.xack(stream, self.s.group, eid)
                continue
            out.append(_delivery(eid, fields.get(b"job"), stream, deliveries.get(eid, 1 << 30)))
        return out

    async def images(self, jobs: Sequence[Job]) -> list[Fetched]:
        """Each job's photo, whether it was answered already (its done marker), or what failed.

        One job's bad key (another type at its photo key: WRONGTYPE) is that job's problem
        only; its batch-mates get their photos.
        """
        if not jobs:
            return []
        async with self.blobs.pipeline(transaction=False) as pipe:  # any slots
            for job in jobs:
                pipe.exists(done_key(job.job_id))
                pipe.get(job.image_key)
            found: list[Any] = await pipe.execute(raise_on_error=False)
        out = []
        for done, photo in zip(found[::2], found[1::2], strict=True):
            for reply in (done, photo):
                if isinstance(reply, TRANSIENT):  # the broker, not the job: retried by the loop
                    raise reply
            if isinstance(photo, Exception):
                out.append(Fetched(problem=f"photo unreadable: {str(photo)[:120]}"))
            else:
                out.append(Fetched(bytes(photo) if photo else None, done is True or done == 1))
        return out

    async def finish(self, done: Sequence[tuple[Delivery, JobResult | None]]) -> None:
        """Per entry: push the result (TTL) if any, delete the photo, then ack and delete the entry."""
        if done:
            await self._settle(done)

    async def dead_letter(
        self, consumer: str, delivery: Delivery, result: JobResult | None, reason: str = "deliveries"
    ) -> None:
        """Move an entry to its shard's dead-letter stream, answering its caller with ``result``."""
        # No user hash in a dead letter: it would outlive /mood forget. The job without it is
        # enough to debug; a malformed entry keeps only its size.
        job = delivery.job.model_copy(update={"user_hash": ""}).model_dump_json() if delivery.job else ""
        record = {
            "job": job,
            "job_id": delivery.answer_to,
            "malformed_bytes": 0 if delivery.job else len(delivery.raw),
            "entry": delivery.entry_id,
            "deliveries": delivery.deliveries,
            "worker": consumer,
            "reason": reason,
        }
        await self._settle([(delivery, result)], dead=record)

    async def _settle(
        self, done: Sequence[tuple[Delivery, JobResult | None]], dead: dict[Any, Any] | None = None
    ) -> None:
        """Answers (once each) and photo deletions first, then the acks (and the dead letter).

        A crash between the two leaves the entry unacknowledged: it is claimed again, and its
        second answer is dropped by the done marker; nothing is lost, nothing answered twice.
        """
        answers = [(d.answer_to, res) for d, res in done if d.answer_to]
        if self.cluster:  # a script can't ride a cluster pipeline: one call per job, concurrently
            replies = await asyncio.gather(
                *(self._answer(j, res, None) for j, res in answers), return_exceptions=True
            )
        else:
            async with self.blobs.pipeline(transaction=False) as blob:
                for job_id, res in answers:
                    await self._answer(job_id, res, blob)
                replies = await blob.execute(raise_on_error=False)
        for (job_id, _), reply in zip(answers, replies, strict=True):
            if isinstance(reply, TRANSIENT):  # nothing acked: the entries are claimed again
                raise reply
            if isinstance(reply, BaseException):  # one job's keys (e.g. WRONGTYPE): its own, logged
                log.error("job %s: its answer could not be stored: %s", job_id, reply)
        by_shard: dict[str, list[Delivery]] = {}
        for d, _ in done:
            by_shard.setdefault(d.stream, []).append(d)
        for stream, entries in by_shard.items():  # one transaction per shard (one slot)
            async with self.redis.pipeline(transaction=True) as pipe:
                if dead is not None:  # bounded in length and in age (a week)
                    dead_stream = self.dead[stream]
                    pipe.xadd(dead_stream, dead, maxlen=10_000, approximate=True)
                    pipe.xtrim(dead_stream, minid=f"{int((time.time() - DEAD_LETTER_AGE_S) * 1000)}-0")
                for d in entries:
                    pipe.xack(stream, self.s.group, d.entry_id)
                    pipe.xdel(stream, d.entry_id)
                await pipe.execute()

    async def _answer(self, job_id: str, res: JobResult | None, pipe: Any) -> None:
        # A job's photo key is its own (the contract checks it), so the id names every key.
        if res is None:  # nobody is waiting for an answer any more
            if pipe is None:
                await self.blobs.delete(image_key(job_id))
            else:
                pipe.delete(image_key(job_id))
            return
        await self._answer_once(
            keys=[result_key(job_id), done_key(job_id), image_key(job_id), waiting_key(job_id)],
            args=[res.model_dump_json(), self.s.result_ttl_s],
            client=pipe,
        )

    async def prune_consumers(self, keep: str, idle_ms: int) -> list[str]:
        """Remove consumers idle longer than ``idle_ms`` with nothing pending (dead workers)."""
        gone = []
        for stream in self.streams:
            try:
                consumers = await self.redis.xinfo_consumers(stream, self.s.group)
            except ResponseError:
                continue
            for c in consumers:
                name = c["name"].decode() if isinstance(c["name"], bytes) else str(c["name"])
                if name != keep and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
                    await self.redis.xgroup_delconsumer(stream, self.s.group, name)
                    gone.append(name)
        return gone

    async def recent_heartbeats(self, host: str) -> list[float]:
        """Heartbeat times of this host's consumers (container health check); no keyspace scan."""
        beats: Any = await self.redis.zrange(WORKERS_KEY, 0, -1, withscores=True)
        prefix = f"{host}-".encode()
        return [float(t) for name, t in beats if bytes(name).startswith(prefix)]


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
