"""The inference worker: jobs from the queue → batched ResNet50 + Grad-CAM → results.

Composition root and health check: :mod:`inference.worker.__main__` (``moodring worker``,
``python -m inference.worker``).

Job handling only; every broker call goes through :mod:`inference.api.transport`. Per loop:
take over jobs a dead consumer left (claim), read up to ``batch_size`` new ones, drop expired
ones without compute, run ONE batched forward + Grad-CAM over every face of the batch in a
single-thread executor (so the loop and the broker stay live), then finish each job (result,
photo deleted, acknowledged). A job that keeps crashing the model goes to the dead-letter
stream after ``max_deliveries`` and its caller gets a typed ``internal`` error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inference.api.contract import MAX_JOB_S, Job, JobError, JobResult, first_problem
from inference.api.errors import MoodringError
from inference.api.manifest import model_id
from inference.api.transport import TRANSIENT, Delivery, open_transport
from inference.serve.adapter import Adapter
from inference.serve.personal import Personal
from inference.worker.adapting import AdapterFollower
from inference.worker.metrics import Metrics
from inference.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

BROKER_DOWN: tuple[type[Exception], ...] = (RedisError, *TRANSIENT)


class BatchPredictor(Protocol):
    """What the worker needs from :class:`inference.serve.predictor.Predictor`."""

    def analyze_many(
        self,
        items: Sequence[bytes],
        want_heatmap: Sequence[bool] | None = None,
        personal: Sequence[Personal | None] | None = None,
        adapter: Adapter | None = None,
    ) -> list[Any]: ...

    def warm_up(self) -> None: ...


class Worker:
    """One consumer in the ``workers`` group. Dependencies are passed in; nothing global."""

    def __init__(
        self,
        redis: Redis,
        predictor: BatchPredictor,
        settings: WorkerSettings,
        name: str | None = None,
        metrics: Metrics | None = None,
        blobs: Redis | None = None,
        adapters: AdapterFollower | None = None,
        model: str = "",
    ) -> None:
        self.redis = redis
        self.queue = open_transport(redis, settings, settings.dead_letter_stream, blobs)
        self.predictor = predictor
        self.s = settings
        self.host = socket.gethostname()
        self.name = name or f"{self.host}-{os.getpid()}"
        self.metrics = metrics or Metrics()
        self.adapters = adapters  # None: no community adapter (readings are the model's own)
        manifest = getattr(predictor, "manifest", None)
        # the model's id (inference.api.manifest.model_id), beaten with each heartbeat
        self.model = model or (model_id(manifest) if manifest is not None else "")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
        self._stopping = asyncio.Event()
        self._last_claim = 0.0
        self._last_prune = 0.0
        self.processed = 0

    def stop(self) -> None:
        """Stop reading new jobs; the current batch is finished and acknowledged."""
        log.info("worker %s stopping", self.name)
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.predictor.warm_up)
        await self._until_broker(self.queue.ensure_group)
        log.info("worker %s ready (batch %d, stream %s)", self.name, self.s.batch_size, self.s.stream)
        await self._until_broker(self._beat)
        # its own task: a worker busy with a long batch still beats, so the alive window can be
        # a few beats (MOODRING_WORKER_ALIVE_S) instead of the longest batch
        beating = asyncio.create_task(self._beat_loop(), name=f"beat {self.name}")
        pause = 0.5
        try:
            while not self._stopping.is_set():
                try:
                    if self.adapters is not None:
                        await self.adapters.poll()
                        await self.adapters.maybe_refit()
                    entries = await self._claim_stale()
                    if not entries:
                        entries = await self.queue.read_new(self.name, self.s.batch_size, self.s.block_ms)
                    if entries:
                        await self._process(entries)
                    pause = 0.5
                except TRANSIENT as exc:
                    log.warning("redis unavailable (%s); reconnecting", exc)
                    await self.queue.recover()
                    await asyncio.sleep(0.5)
                except RedisError as exc:
                    # OOM, READONLY, MISCONF, ...: keep serving. Unacknowledged jobs stay pending and
                    # are claimed again once Redis accepts writes; none is lost to the error.
                    log.warning("redis refused (%s: %s); retrying in %.1f s", type(exc).__name__, exc, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
        finally:
            beating.cancel()  # first: a beat after the leave would promise an answer again
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            try:  # leaving on purpose: no heartbeat lingers to promise an answer
                await self.queue.leave(self.name)
            except BROKER_DOWN as exc:  # then it ages out of the alive window
                log.info("worker %s could not leave the workers' set (%s)", self.name, exc)
            if self.adapters is not None:
                await self.adapters.close()
            self._executor.shutdown(wait=True)
            log.info(
                "worker %s stopped after %d jobs; batch sizes %s",
                self.name,
                self.processed,
                dict(sorted(self.metrics.batch_sizes.items())),
            )

    async def _until_broker(self, fn: Any) -> Any:
        while True:
            try:
                return await fn()
            except RedisError as exc:  # connection lost, or writes refused (OOM, READONLY, MISCONF)
                if self._stopping.is_set():
                    raise
                log.warning("waiting for redis: %s", exc)
                await asyncio.sleep(0.5)

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.s.worker_beat_s)
            try:
                await self._beat()
            except BROKER_DOWN as exc:  # the main loop reports and recovers
                log.debug("beat failed: %s", exc)

    async def _beat(self) -> None:
        precision = str(getattr(self.predictor, "precision", ""))  # int8, bf16 or fp32
        await self.queue.heartbeat(self.name, self.model, precision)
        self.metrics.serves(self.model, self.adapters.version if self.adapters is not None else "", precision)
        if self.metrics.enabled:
            self.metrics.depth.set((await self.queue.backlog()).total)

    async def _claim_stale(self) -> list[Delivery]:
        """Take over jobs whose consumer died (idle > claim_idle_ms); dead-letter repeat offenders."""
        now = time.monotonic()
        if now - self._last_claim < min(1.0, self.s.claim_idle_ms / 2000):
            return []
        self._last_claim = now
        if now - self._last_prune > 60:  # dead consumers leave the group
            self._last_prune = now
            idle = max(10 * self.s.claim_idle_ms, 300_000)
            for name in await self.queue.prune_consumers(keep=self.name, idle_ms=idle):
                log.info("removed dead consumer %s from the group", name)
        out = []
        for d in await self.queue.claim_stale(self.name, self.s.claim_idle_ms, self.s.batch_size):
            if d.deliveries > self.s.max_deliveries:
                await self._dead_letter(d)
                continue
            log.info("reclaimed job entry %s (delivery %d)", d.entry_id.decode(), d.deliveries)
            out.append(d)
        return out

    async def _dead_letter(
        self, d: Delivery, reason: str = "deliveries", answer: bool = True, code: str = "internal"
    ) -> None:
        """Move an entry to the dead letters; its caller (when known and ``answer``) gets ``code``."""
        log.error(
            "job %s (%s, delivery %d): moved to the dead letters",
            d.answer_to or d.entry_id.decode(),
            reason,
            d.deliveries,
        )
        res = None
        if d.answer_to and answer:
            res = self._error(d.answer_to, code, f"dead-lettered: {reason}")
        await self.queue.dead_letter(self.name, d, res, reason)
        self.metrics.dead_letter(code)

    async def _process(self, entries: list[Delivery]) -> None:
        """One batch. Whatever is wrong with one entry is settled for that entry alone."""
        now = time.time()
        live: list[tuple[Delivery, Job]] = []
        done: list[tuple[Delivery, JobResult | None]] = []
        for d in entries:
            if d.job is None:  # every undeliverable entry ends in the dead-letter stream
                # answered with a typed refusal when its id could be read (its caller may wait)
                await self._dead_letter(d, d.problem or "malformed", code="invalid_job")
            elif d.job.deadline <= now:
                # Its submitter stopped waiting at the deadline: no answer, a dead letter.
                await self._dead_letter(d, "expired", answer=False)
            elif d.job.deadline > now + MAX_JOB_S:
                await self._dead_letter(
                    d, f"invalid: deadline more than {MAX_JOB_S:g} s ahead", code="invalid_job"
                )
            else:
                live.append((d, d.job))
        fetched = await self.queue.images([job for _, job in live])
        ready = []
        for (d, job), got in zip(live, fetched, strict=True):
            if got.answered:
                # Answered before (e.g. its ack was lost in a Redis restart): the done marker
                # keeps a second answer out; settled without compute, counted as a re-run.
                done.append((d, None))
                self.metrics.observe("rerun", now - job.submitted_at)
                log.info("job %s was answered already; settled as a re-run", job.job_id)
            elif got.problem:
                await self._dead_letter(d, got.problem)
            elif got.photo:
                ready.append((d, job, got.photo))
            else:
                done.append((d, self._error(job.job_id, "timeout", "image expired")))
        done += await self._compute(ready)
        await self._finish(done)

    def _error(self, job_id: str, code: str, detail: str = "", batch: int = 0) -> JobResult:
        return JobResult(
            job_id=job_id,
            error=JobError(code=code, detail=detail[:200]),  # type: ignore[arg-type]
            worker=self.name,
            batch_size=batch,
        )

    async def _compute(
        self, ready: list[tuple[Delivery, Job, bytes]]
    ) -> list[tuple[Delivery, JobResult | None]]:
        if not ready:
            return []
        loop = asyncio.get_running_loop()
        images = [img for _, _, img in ready]
        flags = [job.options.heatmap for _, job, _ in ready]
        people = [Personal(job.options.prior, job.options.baseline) for _, job, _ in ready]
        adapter = self.adapters.adapter if self.adapters is not None else None
        analyze = functools.partial(self.predictor.analyze_many, adapter=adapter)
        t = time.perf_counter()
        try:
            outs = await loop.run_in_executor(self._executor, analyze, images, flags, people)
        except Exception:
            log.exception("batch of %d crashed the model; retrying jobs one by one", len(ready))
            outs = []
            for img, flag, who in zip(images, flags, people, strict=True):
                try:
                    outs.extend(await loop.run_in_executor(self._executor, analyze, [img], [flag], [who]))
                except Exception:
                    # It crashed the model twice (in the batch and alone): another delivery won't
                    # help, and waiting for N claims would outlast the caller's deadline.
                    log.exception("job crashed the model on its own; dead-lettering it")
                    outs.append(None)
        batch_ms = (time.perf_counter() - t) * 1000
        self.metrics.batched(len(ready))
        results: list[tuple[Delivery, JobResult | None]] = []
        for (d, job, _), out in zip(ready, outs, strict=True):
            if out is None:
                await self._dead_letter(d, "crashed the model")
                continue
            results.append((d, self._to_result(job, out, batch_ms, len(ready))))
        return results

    def _to_result(self, job: Job, out: Any, batch_ms: float, batch: int) -> JobResult:
        if isinstance(out, MoodringError):
            return self._error(job.job_id, out.code, str(out), batch)
        heatmap = base64.b64encode(out.heatmap_jpeg).decode() if out.heatmap_jpeg else None
        try:
            return JobResult(
                job_id=job.job_id,
                faces=out.faces,
                faces_found=out.faces_found,
                heatmap_jpeg_b64=heatmap,
                timings_ms=dict(out.timings_ms) | {"batch": batch_ms},
                worker=self.name,
                batch_size=batch,
            )
        except ValidationError as exc:  # e.g. a number that isn't finite: the contract refuses it
            log.error("job %s: the reading doesn't fit the contract: %s", job.job_id, first_problem(exc))
            return self._error(job.job_id, "internal", "the reading was not a valid result", batch)

    async def _finish(self, done: list[tuple[Delivery, JobResult | None]]) -> None:
        if not done:
            return
        await self.queue.finish(done)
        now = time.time()
        for d, res in done:
            job = d.job
            if job is None or res is None:
                continue
            self.processed += 1
            outcome = "ok" if res.error is None else res.error.code
            self.metrics.observe(outcome, now - job.submitted_at, res.timings_ms)
            log.info(
                "job %s user %s %s faces=%d batch=%d %.0f ms",
                job.job_id,
                job.user_hash,
                outcome,
                len(res.faces),
                res.batch_size,
                (now - job.submitted_at) * 1000,
            )
