"""Queue hardening: one bad entry is settled alone, and no setting or race loses a job silently.

Real redis-server, real workers (in-process, the tiny model), real stream entries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from inference.api.client import JobClient
from inference.api.contract import MAX_JOB_S, Job, JobOptions, JobResult, image_key, result_key
from inference.api.errors import InvalidJob
from inference.api.settings import QueueSettings
from inference.api.transport import done_key, open_transport, waiting_key
from inference.serve.checkpoint import load_model
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.predictor import Predictor
from inference.worker.service import Worker
from inference.worker.settings import WorkerSettings
from tests.conftest import face_photo

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[3]


def _job(job_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid job as a dict (edit it to make it invalid), due in a minute."""
    job_id = job_id or uuid.uuid4().hex
    now = time.time()
    good = Job(job_id=job_id, user_hash="u", image_key=image_key(job_id), submitted_at=now, deadline=now + 60)
    return good.model_dump(mode="json") | fields


async def _enqueue(redis: Redis, stream: str, job: dict[str, Any], photo: bytes | None = None) -> str:
    """Put a raw entry on the stream as a submitter would (its caller waits; its photo, if any)."""
    if photo is not None:
        await redis.set(image_key(job["job_id"]), photo, ex=60)
    await redis.set(waiting_key(job["job_id"]), "1", ex=60)
    await redis.xadd(stream, {"job": json.dumps(job)})
    return str(job["job_id"])


@asynccontextmanager
async def _worker(redis_url: str, model_dir: Path, **settings: Any) -> AsyncIterator[Worker]:
    model, manifest = load_model(model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "block_ms": 50,
        "claim_idle_ms": 300,
        "job_timeout_s": 30,
    }
    worker = Worker(Redis.from_url(redis_url), predictor, WorkerSettings(**values | settings), name="w-hard")
    run = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await run
        await worker.redis.aclose()
        predictor.close()


async def _settled(redis: Redis, stream: str, group: str = "workers", within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await redis.xlen(stream) == 0 and (await redis.xpending(stream, group))["pending"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker did not settle the stream")


async def _dead(redis: Redis, stream: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in await redis.xrange(stream)]


# 1. one poison entry --------------------------------------------------------------------------
async def test_a_photo_key_of_another_type_fails_only_its_own_job(
    redis: Redis, redis_server: str, tiny_model_dir: Path
) -> None:
    """A hash where a photo should be (WRONGTYPE) used to fail the whole batch's photo fetch."""
    settings = WorkerSettings(redis_url=redis_server, batch_size=8)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    await queue.heartbeat("w-before")  # submitters see a worker; none reads yet
    client = JobClient(redis, settings)
    good = [asyncio.create_task(client.analyze(u, face_photo(size=(96, 96)), timeout_s=30)) for u in range(5)]
    poison = _job()
    await redis.hset(image_key(poison["job_id"]), mapping={"not": "a photo"})
    await _enqueue(redis, settings.stream, poison)
    while await redis.xlen(settings.stream) < 6:  # every job waits in the stream: one batch
        await asyncio.sleep(0.02)
    async with _worker(redis_server, tiny_model_dir, batch_size=8) as worker:
        for res in await asyncio.gather(*good):
            assert len(res.faces) == 1 and res.batch_size == 5  # its batch-mates, computed together
        failed = (await queue.wait_result(poison["job_id"], 10)).error
        await _settled(redis, settings.stream)
    assert failed is not None and failed.code == "internal" and "WRONGTYPE" in failed.detail
    [dead] = await _dead(redis, settings.dead_letter_stream)
    assert dead["reason"].startswith("photo unreadable") and "WRONGTYPE" in dead["reason"]
    assert dead["deliveries"] == "1"  # settled on its first delivery, not after three claims
    assert worker.metrics.outcomes["ok"] == 5 and worker.metrics.outcomes["timeout"] == 0


# 2. another job's photo -----------------------------------------------------------------------
def test_the_contract_refuses_a_job_naming_another_jobs_photo() -> None:
    with pytest.raises(ValidationError, match="photo key"):
        Job.model_validate(_job(image_key=image_key("someone-elses-job")))
    with pytest.raises(ValidationError, match="photo key"):
        Job.model_validate(_job(image_key="moodring:session:whatever"))
    Job.model_validate(_job())  # its own photo: fine


async def test_a_job_naming_another_jobs_photo_is_refused_and_the_photo_untouched(
    redis: Redis, redis_server: str, tiny_model_dir: Path
) -> None:
    settings = WorkerSettings(redis_url=redis_server)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    victim = uuid.uuid4().hex
    photo = face_photo(size=(96, 96))
    await redis.set(image_key(victim), photo, ex=60)  # another user's photo, waiting for its job
    thief = _job(image_key=image_key(victim))
    await _enqueue(redis, settings.stream, thief)
    async with _worker(redis_server, tiny_model_dir):
        refused = (await queue.wait_result(thief["job_id"], 20)).error
        await _settled(redis, settings.stream)
    assert refused is not None and refused.code == "invalid_job"
    assert await redis.get(image_key(victim)) == photo  # not read for the thief, not deleted
    [dead] = await _dead(redis, settings.dead_letter_stream)
    assert dead["reason"].startswith("invalid") and "photo key" in dead["reason"]
    assert dead["job_id"] == thief["job_id"] and dead["job"] == ""  # its raw entry isn't kept


# 3. numbers that aren't finite -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("options", {"prior": {"happy": 1e999}}),  # JSON 1e999 reads as infinity
        ("options", {"prior": {"happy": -1.0}}),
        ("options", {"baseline": {"happy": 1e999}}),
        ("options", {"baseline": {"happy": 2.0}}),
        ("deadline", 1e999),
        ("submitted_at", 1e999),
    ],
)
def test_the_contract_refuses_numbers_out_of_range(field: str, value: Any) -> None:
    raw = json.dumps(_job(**{field: value}))  # json.dumps writes inf as Infinity; 1e999 both ways
    raw = raw.replace("Infinity", "1e999")
    with pytest.raises(ValidationError):
        Job.model_validate_json(raw)


def test_the_contract_refuses_a_deadline_beyond_the_longest_wait() -> None:
    now = time.time()
    with pytest.raises(ValidationError, match="deadline"):
        Job.model_validate(_job(submitted_at=now, deadline=now + MAX_JOB_S + 1))
    with pytest.raises(ValidationError, match="deadline"):
        Job.model_validate(_job(submitted_at=now, deadline=now - 1))
    with pytest.raises(ValidationError):
        JobOptions(prior={"happy": float("nan")})
    with pytest.raises(ValidationError):
        JobResult(job_id="abcdefgh", timings_ms={"batch": float("inf")})


async def test_a_client_refuses_a_weight_that_isnt_finite_before_queueing(
    redis: Redis, redis_server: str
) -> None:
    settings = QueueSettings(redis_url=redis_server)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    await queue.heartbeat("w-alive")
    client = JobClient(redis, settings)
    for prior in ({"happy": float("inf")}, {"happy": float("nan")}, {"sad": -2.0}):
        with pytest.raises(InvalidJob, match="prior"):
            await client.analyze("u1", face_photo(), prior=prior)
    with pytest.raises(InvalidJob, match="baseline"):
        await client.analyze("u1", face_photo(), baseline={"happy": float("inf")})
    assert await redis.xlen(settings.stream) == 0
    left = sorted([k async for k in redis.scan_iter(match="moodring:*")])
    assert left == [b"moodring:jobs", b"moodring:workers"]  # the empty stream: no photo, no lock


async def test_a_worker_answers_a_raw_entry_with_an_infinite_prior_with_a_typed_refusal(
    redis: Redis, redis_server: str, tiny_model_dir: Path
) -> None:
    settings = WorkerSettings(redis_url=redis_server)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    bad = _job()
    raw = json.dumps(bad | {"options": {"heatmap": True, "prior": {"happy": 1}}}).replace(
        '"happy": 1', '"happy": 1e999'
    )
    await redis.set(image_key(bad["job_id"]), face_photo(size=(96, 96)), ex=60)
    await redis.set(waiting_key(bad["job_id"]), "1", ex=60)
    await redis.xadd(settings.stream, {"job": raw})
    async with _worker(redis_server, tiny_model_dir):
        refused = (await queue.wait_result(bad["job_id"], 20)).error
        await _settled(redis, settings.stream)
    assert refused is not None and refused.code == "invalid_job" and "finite" in refused.detail
    [dead] = await _dead(redis, settings.dead_letter_stream)
    assert dead["reason"].startswith("invalid: options.prior.happy")
    assert await redis.exists(image_key(bad["job_id"])) == 0  # its own photo goes with it


# 4. a setting pair that would trim accepted jobs ---------------------------------------------
def test_stream_maxlen_below_the_backlog_cap_is_refused() -> None:
    with pytest.raises(ValidationError, match="MOODRING_STREAM_MAXLEN"):
        QueueSettings(stream_maxlen=100, max_backlog=400)
    QueueSettings(stream_maxlen=400, max_backlog=400)


@pytest.mark.parametrize("module", ["inference.worker", "bot"])
def test_the_bad_pair_stops_start_up_with_one_line(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "MOODRING_STREAM_MAXLEN": "100",
        "MOODRING_MAX_BACKLOG": "400",
        "MOODRING_DISCORD_TOKEN": "t",
        "MOODRING_USER_SALT": "s" * 32,
    }
    run = subprocess.run(
        [sys.executable, "-m", module], env=env, cwd="/", capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "MOODRING_STREAM_MAXLEN (100) is below MOODRING_MAX_BACKLOG (400)" in lines[0]


# 5. re-runs of answered jobs ------------------------------------------------------------------
async def test_a_rerun_of_an_answered_job_is_counted_as_a_rerun_not_a_timeout(
    redis: Redis, redis_server: str, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a Redis restart an answered job may come again: photo gone, done marker set."""
    settings = WorkerSettings(redis_url=redis_server)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    again = _job()
    await redis.set(done_key(again["job_id"]), "1", ex=60)  # answered, its ack lost
    await redis.xadd(settings.stream, {"job": json.dumps(again)})
    fresh = _job()
    await _enqueue(redis, settings.stream, fresh, face_photo(size=(96, 96)))
    caplog.set_level(logging.INFO, logger="inference.worker.service")
    async with _worker(redis_server, tiny_model_dir) as worker:
        assert len((await queue.wait_result(fresh["job_id"], 20)).faces) == 1
        await _settled(redis, settings.stream)
    assert worker.metrics.outcomes == {"rerun": 1, "ok": 1}
    assert any(
        "answered already" in r.getMessage() and again["job_id"] in r.getMessage() for r in caplog.records
    )
    assert not any("timeout" in r.getMessage() for r in caplog.records)
    assert await redis.llen(result_key(again["job_id"])) == 0  # no second answer
    assert await redis.xlen(settings.dead_letter_stream) == 0


# 6. photos held never exceed the cap -----------------------------------------------------------
async def test_photos_held_never_exceed_the_backlog_cap(redis: Redis, redis_server: str) -> None:
    """Every photo SET, DEL and expiry, in server order (keyspace events): the count never passes
    the cap, however many submitters race for the last places."""
    cap = 5
    settings = QueueSettings(redis_url=redis_server, max_backlog=cap)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    await redis.config_set("notify-keyspace-events", "E$gx")
    events: list[tuple[str, str]] = []
    listener = Redis.from_url(redis_server)
    pubsub = listener.pubsub()
    await pubsub.psubscribe("__keyevent@0__:*")
    while (await pubsub.get_message(timeout=1.0)) is not None:  # the subscribe confirmation
        pass

    async def listen() -> None:
        async for msg in pubsub.listen():
            if msg["type"] == "pmessage":
                events.append((msg["channel"].decode().rsplit(":", 1)[1], msg["data"].decode()))

    reader = asyncio.create_task(listen())
    try:
        photo = face_photo(size=(200, 200))

        async def submit(i: int) -> bool:
            now = time.time()
            job_id = f"race{i:04d}{uuid.uuid4().hex[:8]}"
            job = Job(
                job_id=job_id, user_hash="u", image_key=image_key(job_id), submitted_at=now, deadline=now + 30
            )
            return await queue.submit(job, photo, 30, cap)

        accepted = await asyncio.gather(*(submit(i) for i in range(40)))
        await redis.set("moodring:test:marker", "1")  # the last event: every earlier one is in
        while ("set", "moodring:test:marker") not in events:
            await asyncio.sleep(0.02)
    finally:
        reader.cancel()
        await pubsub.aclose()
        await listener.aclose()
        await redis.config_set("notify-keyspace-events", "")
    assert sum(accepted) == cap
    held: set[str] = set()
    peak = 0
    for event, key in events:
        if not key.endswith(":img"):
            continue
        if event == "set":
            held.add(key)
        elif event in ("del", "expired"):
            held.discard(key)
        peak = max(peak, len(held))
    assert peak == cap, f"{peak} photos held at once with a cap of {cap}"
    assert len([k async for k in redis.scan_iter(match="moodring:job:*:img")]) == cap
