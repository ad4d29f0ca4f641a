"""Submit side of the job queue (used by the bot; no torch).

``JobClient.analyze`` validates and shrinks the photo, refuses when the backlog is
over the cap (typed ``Busy``, immediately), allows one job in flight per user,
``XADD``s the job and waits for the worker's answer with ``BLPOP`` and a timeout.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inference.config import WORKING_SIDE, QueueSettings
from inference.contract import (
    Job,
    JobOptions,
    JobResult,
    hash_user,
    image_key,
    inflight_key,
    result_key,
)
from inference.errors import BadImage, MoodringError

log = logging.getLogger(__name__)

SNIFF = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"RIFF", "webp"),
    (b"BM", "bmp"),
)


class Busy(MoodringError):
    """The queue's backlog is over the cap: try again later (raised immediately)."""

    code = "busy"


class AlreadyRunning(MoodringError):
    """This user already has a photo being analysed."""

    code = "busy"


class JobTimeout(MoodringError):
    """No worker answered before the deadline."""

    code = "timeout"


class JobFailed(MoodringError):
    """The worker answered with a typed error; ``code`` mirrors it."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code  # type: ignore[misc]


def sniff_type(data: bytes) -> str | None:
    """Cheap content-type check from magic bytes (HEIC: ``ftyp`` box)."""
    for magic, kind in SNIFF:
        if data.startswith(magic):
            return kind
    if data[4:8] == b"ftyp":
        return "heif"
    return None


def shrink_for_queue(data: bytes, max_side: int = WORKING_SIDE, max_bytes: int = 20 * 1024 * 1024) -> bytes:
    """Decode, apply EXIF orientation, drop all metadata and re-encode at most ``max_side`` px.

    Runs in a thread (``asyncio.to_thread``) on the bot side; workers decode again
    with the full hostile-input checks.
    """
    from inference.intake import IntakeLimits, decode_image

    if data and sniff_type(data) is None:
        raise BadImage("not a supported image type")
    # decode_image does the empty/size/bomb checks and applies EXIF orientation.
    decoded = decode_image(data, IntakeLimits(max_bytes=max_bytes, max_side=max_side))
    buf = io.BytesIO()
    decoded.image.save(buf, format="JPEG", quality=90)  # no exif= → metadata stripped
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class Backlog:
    lag: int
    pending: int

    @property
    def total(self) -> int:
        return self.lag + self.pending


async def ensure_group(redis: Redis, settings: QueueSettings) -> None:
    """Create the stream and its consumer group if they don't exist (idempotent)."""
    try:
        await redis.xgroup_create(settings.stream, settings.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def backlog(redis: Redis, settings: QueueSettings) -> Backlog:
    """Entries not yet delivered (lag) plus delivered but unacknowledged (pending)."""
    try:
        groups = await redis.xinfo_groups(settings.stream)
    except ResponseError:
        return Backlog(0, 0)
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == settings.group:
            lag = g.get("lag")
            if lag is None:  # Redis could not compute it: fall back to stream length
                lag = await redis.xlen(settings.stream)
            return Backlog(int(lag), int(g.get("pending", 0)))
    return Backlog(await redis.xlen(settings.stream), 0)


class JobClient:
    """What the bot uses to get a photo analysed by some worker."""

    def __init__(self, redis: Redis, settings: QueueSettings, max_side: int = WORKING_SIDE) -> None:
        self._redis = redis
        self._settings = settings
        self._max_side = max_side

    async def analyze(
        self, user_id: int | str, data: bytes, want_heatmap: bool = True, timeout_s: float | None = None
    ) -> JobResult:
        """Submit a photo and wait for its result.

        Raises:
            BadImage, ImageTooLarge: the upload is unusable (checked before queueing).
            Busy: backlog over the cap; AlreadyRunning: this user has a job in flight.
            JobTimeout: no answer in time; JobFailed: the worker answered with an error.
        """
        s = self._settings
        timeout = timeout_s or s.job_timeout_s
        shrunk = await asyncio.to_thread(shrink_for_queue, data, self._max_side)
        user = hash_user(user_id)
        job_id = uuid.uuid4().hex
        depth = await self._with_retry(lambda: backlog(self._redis, s))
        if depth.total >= s.max_backlog:
            log.warning("shedding load: backlog %d >= %d (user %s)", depth.total, s.max_backlog, user)
            raise Busy(f"backlog {depth.total}")
        lock = inflight_key(user)
        if not await self._redis.set(lock, job_id, nx=True, ex=int(timeout) + 5):
            raise AlreadyRunning("one photo at a time")
        now = time.time()
        job = Job(
            job_id=job_id,
            user_hash=user,
            image_key=image_key(job_id),
            submitted_at=now,
            deadline=now + timeout,
            options=JobOptions(heatmap=want_heatmap),
        )
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(job.image_key, shrunk, ex=int(timeout) + 5)
                pipe.xadd(s.stream, {"job": job.model_dump_json()}, maxlen=s.stream_maxlen, approximate=True)
                await pipe.execute()
            log.info("job %s submitted by user %s (%d bytes)", job_id, user, len(shrunk))
            result = await self._wait(job_id, timeout)
        finally:
            await self._cleanup(job, lock)
        if result.error is not None:
            raise JobFailed(result.error.code, result.error.detail)
        return result

    async def _wait(self, job_id: str, wait_s: float) -> JobResult:
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobTimeout(job_id)
            try:
                # short BLPOP slices stay below any client socket timeout and notice reconnects quickly
                item = await self._redis.blpop([result_key(job_id)], timeout=max(1, min(int(left), 2)))
            except (RedisConnectionError, RedisTimeoutError):
                log.warning("redis unavailable while waiting for job %s; retrying", job_id)
                await asyncio.sleep(0.5)
                continue
            if item is not None:
                return JobResult.model_validate_json(item[1])

    async def _cleanup(self, job: Job, lock: str) -> None:
        try:
            await self._redis.delete(job.image_key, result_key(job.job_id))
            if await self._redis.get(lock) == job.job_id.encode():
                await self._redis.delete(lock)
        except (RedisConnectionError, RedisTimeoutError):
            log.warning("could not clean up job %s (keys expire by TTL)", job.job_id)

    async def _with_retry(self, fn, attempts: int = 20):  # type: ignore[no-untyped-def]
        for i in range(attempts):
            try:
                return await fn()
            except (RedisConnectionError, RedisTimeoutError):
                if i == attempts - 1:
                    raise
                await asyncio.sleep(0.25)
        raise AssertionError("unreachable")
