"""The inference worker: Redis Streams consumer group → batched ResNet50 + Grad-CAM.

Composition root: ``moodring worker`` / ``python -m inference.worker``.

Per loop: reclaim jobs idle too long on a dead consumer (``XAUTOCLAIM``), read up
to ``batch_size`` new ones (``XREADGROUP COUNT BLOCK``), drop expired ones
without compute, run ONE batched forward + Grad-CAM over every face of the batch
in a single-thread executor (so the loop and Redis stay live), then per job in one
transaction: ``RPUSH`` the result (with TTL), delete the image, ``XACK`` + ``XDEL``.
A job that keeps crashing the model goes to the dead-letter stream after
``max_deliveries`` and its caller gets a typed ``internal`` error.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import click
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inference.config import WorkerSettings, load_settings
from inference.contract import FaceOut, Job, JobError, JobResult, result_key
from inference.errors import MoodringError
from inference.jobs import backlog, ensure_group

log = logging.getLogger(__name__)


class BatchPredictor(Protocol):
    """What the worker needs from :class:`inference.predictor.Predictor`."""

    def analyze_many(
        self, items: Sequence[bytes], want_heatmap: Sequence[bool] | None = None
    ) -> list[Any]: ...

    def warm_up(self) -> None: ...


def heartbeat_key(consumer: str) -> str:
    """Per-consumer liveness key; consumer names start with the host name."""
    return f"moodring:worker:{consumer}"


@dataclass
class Metrics:
    """Prometheus metrics if prometheus-client is installed and a port is configured."""

    enabled: bool = False
    jobs: Any = None
    latency: Any = None
    batch: Any = None
    depth: Any = None
    batch_sizes: Counter[int] = field(default_factory=Counter)

    @classmethod
    def start(cls, port: int | None) -> Metrics:
        if port is None:
            return cls()
        from prometheus_client import Counter as PCounter
        from prometheus_client import Gauge, Histogram, start_http_server

        start_http_server(port)
        log.info("metrics on :%d/metrics", port)
        return cls(
            enabled=True,
            jobs=PCounter("moodring_jobs_total", "Jobs finished", ["outcome"]),
            latency=Histogram(
                "moodring_job_latency_seconds", "Submit to result", buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
            ),
            batch=Histogram("moodring_batch_size", "Jobs per model batch", buckets=(1, 2, 4, 8, 16, 32)),
            depth=Gauge("moodring_queue_depth", "Backlog: lag + pending"),
        )

    def observe(self, outcome: str, latency_s: float) -> None:
        if self.enabled:
            self.jobs.labels(outcome).inc()
            self.latency.observe(latency_s)


class Worker:
    """One consumer in the ``workers`` group. Dependencies are passed in; nothing global."""

    def __init__(
        self,
        redis: Redis,
        predictor: BatchPredictor,
        settings: WorkerSettings,
        name: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.redis = redis
        self.predictor = predictor
        self.s = settings
        self.host = socket.gethostname()
        self.name = name or f"{self.host}-{os.getpid()}"
        self.metrics = metrics or Metrics()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
        self._stopping = asyncio.Event()
        self._last_claim = 0.0
        self.processed = 0

    def stop(self) -> None:
        """Stop reading new jobs; the current batch is finished and acknowledged."""
        log.info("worker %s stopping", self.name)
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.predictor.warm_up)
        await self._until_redis(lambda: ensure_group(self.redis, self.s))
        log.info("worker %s ready (batch %d, stream %s)", self.name, self.s.batch_size, self.s.stream)
        try:
            while not self._stopping.is_set():
                try:
                    await self._beat()
                    entries = await self._claim_stale()
                    if not entries:
                        entries = await self._read_new()
                    if entries:
                        await self._process(entries)
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    log.warning("redis unavailable (%s); reconnecting", exc)
                    await asyncio.sleep(0.5)
        finally:
            self._executor.shutdown(wait=True)
            log.info(
                "worker %s stopped after %d jobs; batch sizes %s",
                self.name,
                self.processed,
                dict(sorted(self.metrics.batch_sizes.items())),
            )

    async def _until_redis(self, fn: Any) -> Any:
        while True:
            try:
                return await fn()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if self._stopping.is_set():
                    raise
                log.warning("waiting for redis: %s", exc)
                await asyncio.sleep(0.5)

    async def _beat(self) -> None:
        await self.redis.set(heartbeat_key(self.name), str(time.time()), ex=int(self.s.heartbeat_s * 3) + 1)
        if self.metrics.enabled:
            self.metrics.depth.set((await backlog(self.redis, self.s)).total)

    async def _read_new(self) -> list[tuple[bytes, dict[bytes, bytes], int]]:
        resp: Any = await self.redis.xreadgroup(  # redis-py's response type is a loose union
            self.s.group, self.name, {self.s.stream: ">"}, count=self.s.batch_size, block=self.s.block_ms
        )
        if not resp:
            return []
        return [(eid, fields, 1) for eid, fields in resp[0][1] if fields]

    async def _claim_stale(self) -> list[tuple[bytes, dict[bytes, bytes], int]]:
        """Take over jobs whose consumer died (idle > claim_idle_ms); dead-letter repeat offenders."""
        now = time.monotonic()
        if now - self._last_claim < min(1.0, self.s.claim_idle_ms / 2000):
            return []
        self._last_claim = now
        _, claimed, _deleted = await self.redis.xautoclaim(
            self.s.stream,
            self.s.group,
            self.name,
            min_idle_time=self.s.claim_idle_ms,
            start_id="0-0",
            count=self.s.batch_size,
        )
        if not claimed:
            return []
        ids = [eid for eid, _ in claimed]
        info = await self.redis.xpending_range(
            self.s.stream, self.s.group, min=ids[0], max=ids[-1], count=len(ids) * 4, consumername=self.name
        )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in info}
        out = []
        for eid, fields in claimed:
            n = deliveries.get(eid, self.s.max_deliveries + 1)
            if not fields:  # entry deleted meanwhile
                await self.redis.xack(self.s.stream, self.s.group, eid)
                continue
            if n > self.s.max_deliveries:
                await self._dead_letter(eid, fields, n)
                continue
            log.info("reclaimed job entry %s (delivery %d)", eid.decode(), n)
            out.append((eid, fields, n))
        return out

    async def _dead_letter(self, eid: bytes, fields: dict[bytes, bytes], deliveries: int) -> None:
        job = _parse(fields)
        log.error(
            "job %s failed %d deliveries: moved to %s",
            job.job_id if job else eid.decode(),
            deliveries - 1,
            self.s.dead_letter_stream,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.s.dead_letter_stream,
                {
                    "job": fields.get(b"job", b""),
                    "entry": eid,
                    "deliveries": deliveries - 1,
                    "worker": self.name,
                },
                maxlen=10_000,
                approximate=True,
            )
            if job is not None:
                res = JobResult(
                    job_id=job.job_id,
                    error=JobError(code="internal", detail="dead-lettered"),
                    worker=self.name,
                )
                pipe.rpush(result_key(job.job_id), res.model_dump_json())
                pipe.expire(result_key(job.job_id), self.s.result_ttl_s)
                pipe.delete(job.image_key)
            pipe.xack(self.s.stream, self.s.group, eid)
            pipe.xdel(self.s.stream, eid)
            await pipe.execute()
        self.metrics.observe("dead_letter", 0.0)

    async def _process(self, entries: list[tuple[bytes, dict[bytes, bytes], int]]) -> None:
        now = time.time()
        live: list[tuple[bytes, Job]] = []
        done: list[tuple[bytes, Job | None, JobResult | None]] = []
        for eid, fields, _n in entries:
            job = _parse(fields)
            if job is None:
                done.append((eid, None, None))
            elif job.deadline <= now:
                log.info("job %s expired before compute; dropped", job.job_id)
                done.append(
                    (eid, job, JobResult(job_id=job.job_id, error=JobError(code="timeout"), worker=self.name))
                )
            else:
                live.append((eid, job))
        if live:
            images: list[Any] = await self.redis.mget([job.image_key for _, job in live])  # bytes | None
            ready = [(eid, job, img) for (eid, job), img in zip(live, images, strict=True) if img]
            for (eid, job), img in zip(live, images, strict=True):
                if not img:
                    done.append(
                        (
                            eid,
                            job,
                            JobResult(
                                job_id=job.job_id,
                                worker=self.name,
                                error=JobError(code="timeout", detail="image expired"),
                            ),
                        )
                    )
            done += await self._compute(ready)
        await self._finish(done)

    async def _compute(
        self, ready: list[tuple[bytes, Job, bytes]]
    ) -> list[tuple[bytes, Job | None, JobResult | None]]:
        if not ready:
            return []
        loop = asyncio.get_running_loop()
        images = [img for _, _, img in ready]
        flags = [job.options.heatmap for _, job, _ in ready]
        t = time.perf_counter()
        try:
            outs = await loop.run_in_executor(self._executor, self.predictor.analyze_many, images, flags)
        except Exception:
            log.exception("batch of %d crashed the model; retrying jobs one by one", len(ready))
            outs = []
            for img, flag in zip(images, flags, strict=True):
                try:
                    outs.extend(
                        await loop.run_in_executor(self._executor, self.predictor.analyze_many, [img], [flag])
                    )
                except Exception:
                    log.exception("job crashed the model; leaving it pending for redelivery")
                    outs.append(None)
        batch_ms = (time.perf_counter() - t) * 1000
        self.metrics.batch_sizes[len(ready)] += 1
        if self.metrics.enabled:
            self.metrics.batch.observe(len(ready))
        results: list[tuple[bytes, Job | None, JobResult | None]] = []
        for (eid, job, _), out in zip(ready, outs, strict=True):
            if out is None:
                continue  # not acked: XAUTOCLAIM re-delivers it, dead-lettered after N tries
            results.append((eid, job, self._to_result(job, out, batch_ms, len(ready))))
        return results

    def _to_result(self, job: Job, out: Any, batch_ms: float, batch: int) -> JobResult:
        if isinstance(out, MoodringError):
            return JobResult(
                job_id=job.job_id,
                error=JobError(code=out.code, detail=str(out)[:200]),  # type: ignore[arg-type]
                worker=self.name,
                batch_size=batch,
            )
        faces = tuple(
            FaceOut(
                box=f.box,
                score=f.score,
                emotion=f.emotion,
                confidence=f.confidence,
                probs=f.probs,
                reason=f.reason,
            )
            for f in out.faces
        )
        png = base64.b64encode(out.heatmap_png).decode() if out.heatmap_png else None
        timings = dict(out.timings_ms) | {"batch": batch_ms}
        return JobResult(
            job_id=job.job_id,
            faces=faces,
            heatmap_png_b64=png,
            timings_ms=timings,
            worker=self.name,
            batch_size=batch,
        )

    async def _finish(self, done: list[tuple[bytes, Job | None, JobResult | None]]) -> None:
        if not done:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for eid, job, res in done:
                if job is not None and res is not None:
                    pipe.rpush(result_key(job.job_id), res.model_dump_json())
                    pipe.expire(result_key(job.job_id), self.s.result_ttl_s)
                    pipe.delete(job.image_key)
                pipe.xack(self.s.stream, self.s.group, eid)
                pipe.xdel(self.s.stream, eid)
            await pipe.execute()
        now = time.time()
        for _eid, job, res in done:
            if job is None or res is None:
                continue
            self.processed += 1
            outcome = "ok" if res.error is None else res.error.code
            self.metrics.observe(outcome, now - job.submitted_at)
            log.info(
                "job %s user %s %s faces=%d batch=%d %.0f ms",
                job.job_id,
                job.user_hash,
                outcome,
                len(res.faces),
                res.batch_size,
                (now - job.submitted_at) * 1000,
            )


def _parse(fields: dict[bytes, bytes]) -> Job | None:
    raw = fields.get(b"job")
    if raw is None:
        return None
    try:
        return Job.model_validate_json(raw)
    except ValueError:
        log.error("dropping malformed job entry (%d bytes)", len(raw))
        return None


async def check(settings: WorkerSettings) -> int:
    """Health check for containers: Redis answers and this host's worker beat recently."""
    redis = Redis.from_url(settings.redis_url, socket_timeout=3)
    try:
        await redis.ping()
        keys = [
            k async for k in redis.scan_iter(match=heartbeat_key(f"{socket.gethostname()}-*"), count=1000)
        ]
        beats = [float(v) for v in await redis.mget(keys) if v is not None] if keys else []
    except (RedisConnectionError, RedisTimeoutError) as exc:
        click.echo(f"unhealthy: redis unreachable ({exc})", err=True)
        return 1
    finally:
        await redis.aclose()
    if not beats or time.time() - max(beats) > settings.heartbeat_s * 3:
        click.echo("unhealthy: no recent worker heartbeat", err=True)
        return 1
    click.echo("healthy")
    return 0


async def serve(settings: WorkerSettings) -> None:
    """Build the predictor and Redis client, run one worker until SIGTERM."""
    import torch

    from inference.intake import IntakeLimits
    from inference.predictor import Predictor

    torch.set_num_threads(settings.torch_threads)
    limits = IntakeLimits(max_bytes=settings.max_upload_bytes, max_side=settings.max_side)
    predictor = Predictor.load(settings.model_dir, settings.face_detector, limits, bf16=settings.bf16)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=max(5.0, settings.block_ms / 1000 + 2),
        socket_connect_timeout=3,
        health_check_interval=10,
    )
    worker = Worker(redis, predictor, settings, metrics=Metrics.start(settings.metrics_port))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        predictor.close()
        await redis.aclose()


@click.command("worker")
@click.option("--check", "health", is_flag=True, help="Exit 0 if Redis and this host's worker are healthy.")
def worker_command(health: bool) -> None:
    """Consume analysis jobs from Redis Streams (scale out: run more of these anywhere)."""
    from inference.logsetup import configure_logging

    settings = load_settings(WorkerSettings)
    configure_logging(settings.log_level, settings.log_json)
    if health:
        sys.exit(asyncio.run(check(settings)))
    asyncio.run(serve(settings))


if __name__ == "__main__":
    worker_command(prog_name="python -m inference.worker")
