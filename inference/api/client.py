"""Submit side of the job queue (used by the bot and ``moodring submit``; no torch).

``JobClient.analyze`` validates and shrinks the photo, refuses when the backlog is over the
cap (typed ``Busy``, immediately), allows one job in flight per user, queues the job and
waits for the worker's answer with a timeout. Broker calls go through
:mod:`inference.api.transport`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Mapping

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from inference.api.contract import Job, JobOptions, JobResult, first_problem, hash_user, image_key
from inference.api.errors import BadImage, Busy, InvalidJob, JobFailed, Unavailable
from inference.api.settings import WORKING_SIDE, QueueSettings
from inference.api.transport import open_transport, retry_transient

log = logging.getLogger(__name__)

SNIFF = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"RIFF", "webp"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


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

    Runs in a thread (``asyncio.to_thread``) on the submit side; workers decode again
    with the full hostile-input checks.
    """
    from inference.api.intake import IntakeLimits, decode_image

    if data and sniff_type(data) is None:
        raise BadImage("not a supported image type")
    # decode_image does the empty/size/bomb checks and applies EXIF orientation.
    decoded = decode_image(data, IntakeLimits(max_bytes=max_bytes, max_side=max_side))
    buf = io.BytesIO()
    decoded.image.save(buf, format="JPEG", quality=90)  # no exif= → metadata stripped
    return buf.getvalue()


class JobClient:
    """What the bot uses to get a photo analysed by some worker."""

    def __init__(
        self,
        redis: Redis,
        settings: QueueSettings,
        max_side: int = WORKING_SIDE,
        blobs: Redis | None = None,
        salt: str = "moodring",
    ) -> None:
        self._queue = open_transport(redis, settings, blobs=blobs)
        self._salt = salt  # the deployment's user-hash secret (the same as the bot's store)
        self._settings = settings
        self._max_side = max_side

    async def analyze(
        self,
        user_id: int | str,
        data: bytes,
        want_heatmap: bool = True,
        timeout_s: float | None = None,
        prior: Mapping[str, float] | None = None,
        baseline: Mapping[str, float] | None = None,
        job_id: str | None = None,
    ) -> JobResult:
        """Submit a photo and wait for its result.

        ``prior`` (correction weights) and ``baseline`` (the calm face's probabilities) re-weight
        the classes of the sender's (largest) face in the worker. ``job_id`` lets the caller
        name the job first (so another process can :meth:`resume` waiting for it).

        Raises:
            BadImage, ImageTooLarge: the upload is unusable (checked before queueing).
            Busy: backlog over the cap, or this user has a job in flight.
            Unavailable: no worker is alive (answered at once, not after the deadline).
            JobTimeout: no answer in time; JobFailed: the worker answered with an error.
        """
        shrunk = await asyncio.to_thread(shrink_for_queue, data, self._max_side)
        user = hash_user(user_id, self._salt)
        try:
            options = JobOptions(heatmap=want_heatmap, prior=dict(prior or {}), baseline=dict(baseline or {}))
        except ValidationError as exc:  # e.g. a weight that isn't finite: refused here, never queued
            raise InvalidJob(first_problem(exc, "job")) from None
        try:
            return await self._run(user, job_id or uuid.uuid4().hex, shrunk, options, timeout_s)
        except (RedisError, RedisClusterException) as exc:  # after transient retries: refused or gone
            log.warning("redis failed for user %s: %s: %s", user, type(exc).__name__, exc)
            raise Unavailable(f"redis: {type(exc).__name__}") from exc

    async def _run(
        self, user: str, job_id: str, shrunk: bytes, options: JobOptions, timeout_s: float | None
    ) -> JobResult:
        s = self._settings
        timeout = timeout_s or s.job_timeout_s
        if not await retry_transient(lambda: self._queue.workers_alive(s.worker_alive_s)):
            log.warning("no worker alive: refusing job of user %s at once", user)
            raise Unavailable(f"no worker beat in the last {s.worker_alive_s:g} s")
        if not await self._queue.lock_user(user, job_id, int(timeout) + 5):
            raise Busy("one photo at a time")
        now = time.time()
        try:
            job = Job(
                job_id=job_id,
                user_hash=user,
                image_key=image_key(job_id),
                submitted_at=now,
                deadline=now + timeout,
                options=options,
            )
        except ValidationError as exc:  # a job id or a timeout out of the contract's range
            await self._queue.cleanup(job_id, user)
            raise InvalidJob(first_problem(exc, "job")) from None
        try:  # from here on the lock is released and the photo deleted whatever happens
            if not await self._queue.submit(job, shrunk, int(timeout) + 5, s.max_backlog):
                log.warning("shedding load: backlog at the cap %d (user %s)", s.max_backlog, user)
                raise Busy("backlog at the cap")
            log.info("job %s submitted by user %s (%d bytes)", job_id, user, len(shrunk))
            result = await self._queue.wait_result(job_id, timeout)
        finally:
            await self._queue.cleanup(job_id, user)
        return _answered(result)

    async def resume(self, user_id: int | str, job_id: str, wait_s: float) -> JobResult:
        """Wait for a job another process submitted and stopped waiting for (it died), then clean up.

        Raises JobTimeout when no answer comes within ``wait_s``; JobFailed for a typed error.
        """
        try:
            result = await self._queue.wait_result(job_id, max(wait_s, 0.5))
        finally:
            await self._queue.cleanup(job_id, hash_user(user_id, self._salt))
        return _answered(result)


def _answered(result: JobResult) -> JobResult:
    """The worker's answer, or its typed error raised as :class:`JobFailed`."""
    if result.error is not None:
        raise JobFailed(result.error.code, result.error.detail)
    return result
