"""The job queue's vocabulary on Redis Streams: entry types, key names, shard names, the Lua
scripts both sides run, and parsing an entry into a job.

The two sides of the protocol live beside it: :mod:`inference.api.stream_submit` (what a
submitter does: reserve, write the photo, add the job, wait, clean up) and
:mod:`inference.api.stream_worker` (what a worker does: read, claim, fetch photos, answer once,
ack, dead-letter, prune); :mod:`inference.api.transport` puts them together behind one
:class:`~inference.api.transport.Transport`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ClusterDownError, RedisClusterException, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inference.api.contract import JOB_ID_PATTERN, Job, first_problem, job_key
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

# A user's "one photo at a time" lock whose job is settled (its done marker) or that nobody waits
# for any more (no waiting mark once the lock is this old) no longer blocks: after a crash of the
# durable Redis the lock comes back from its AOF while the job's keys may not.
LOCK_GRACE_MS = 2_000
TAKE_OVER_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

WORKERS_KEY = "moodring:workers"  # sorted set: consumer -> time of its last heartbeat
WORKER_MODEL_TTL_S = 86_400


def _name(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def worker_model_key(consumer: str) -> str:
    """What a worker serves, "<model id> <precision>" (renewed with each beat; a day after its
    last one: gone; written by ``heartbeat``, read back by :func:`served`)."""
    return f"moodring:worker:{{{consumer}}}:model"


def served(raw: bytes | str | None) -> tuple[str, str]:
    """The model id and precision a worker's beat says it serves ("" for what it didn't say)."""
    model, _, precision = _name(raw).partition(" ") if raw else ("", "", "")
    return model, precision


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
        problem = f"invalid: {first_problem(exc)}"[:200]
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


def delivery(eid: bytes, raw: bytes, stream: str, deliveries: int) -> Delivery:
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


class StreamBase:
    """What both sides share: the clients, the shard streams and their dead-letter streams, the
    scripts, and the group's backlog."""

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
        self._take_over = redis.register_script(TAKE_OVER_LOCK)

    async def lock_is_stale(self, holder: str, held_ms: int) -> bool:
        """A user lock held by job ``holder`` for ``held_ms`` blocks nobody: the job was answered
        (done marker), or, past the grace that covers a submit in progress, nobody waits for it."""
        async with self.blobs.pipeline(transaction=False) as pipe:  # two slots at most: any
            pipe.exists(done_key(holder))
            pipe.exists(waiting_key(holder))
            done, waiting = await pipe.execute()
        return bool(done) or (not waiting and held_ms >= LOCK_GRACE_MS)

    async def alive_workers(self, within_s: float) -> dict[str, str]:
        """The consumers that beat in the last ``within_s`` seconds, each with the model it serves."""
        beat: Any = await self.redis.zrangebyscore(WORKERS_KEY, time.time() - within_s, "+inf")
        names = [_name(n) for n in beat]
        models: list[Any] = [await self.redis.get(worker_model_key(n)) for n in names]  # any slots
        return {n: served(m)[0] for n, m in zip(names, models, strict=True)}  # deploys compare model ids

    async def dead_letter_count(self) -> int:
        """Entries in the dead-letter streams (kept a week, or the last 10,000 per shard)."""
        return sum([int(await self.redis.xlen(dead)) for dead in self.dead.values()])

    def _shard_cap(self, max_backlog: int) -> int:
        return -(-max_backlog // len(self.streams))

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
