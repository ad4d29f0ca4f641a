"""Workers follow the deployment's community adapter: a new version or a rollback reaches them
without a restart, one that doesn't fit the model is refused, and only one of them refits at a
time. Real Redis, real workers (in-process), the tiny model."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from redis.asyncio import Redis

from inference.api.client import JobClient
from inference.api.community import AdapterRegistry
from inference.serve.adapter import Adapter
from inference.serve.checkpoint import load_model
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.predictor import Predictor
from inference.worker.adapting import AdapterFollower
from inference.worker.service import Worker
from inference.worker.settings import WorkerSettings
from tests.conftest import face_photo, wait_for_worker
from tests.inference.api.test_community import _contribute

pytestmark = pytest.mark.timeout(180)

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _leaning(to: str, version: str) -> str:
    bias = np.zeros(len(CLASSES))
    bias[CLASSES.index(to)] = 50.0
    return Adapter(version, CLASSES, np.eye(len(CLASSES)), bias).to_json(fitted_at=time.time())


@pytest.fixture
async def following(redis_server: str, tiny_model_dir: Path) -> AsyncIterator[Worker]:
    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    settings = WorkerSettings(
        redis_url=redis_server, block_ms=50, job_timeout_s=60, adapt_poll_s=0.1, adapt_every_s=0
    )
    redis = Redis.from_url(redis_server)
    follower = AdapterFollower(redis, settings, manifest.classes, "", 0, "w-adapt")
    worker = Worker(redis, predictor, settings, name="w-adapt", adapters=follower)
    run = asyncio.create_task(worker.run())
    yield worker
    worker.stop()
    await run
    await redis.aclose()
    predictor.close()


async def _reads(client: JobClient, photo: bytes, adapter: str, within_s: float = 10) -> str:
    """Submit until a reading comes back with ``adapter`` applied; its label."""
    deadline = time.monotonic() + within_s
    while True:
        face = (await client.analyze("u1", photo)).faces[0]
        if face.adapter == adapter:
            return face.emotion
        if time.monotonic() > deadline:
            raise AssertionError(f"still {face.adapter!r}, not {adapter!r}")
        await asyncio.sleep(0.1)


async def test_a_worker_follows_new_versions_and_rollbacks_without_restart(
    redis: Redis, following: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    await wait_for_worker(redis)
    client = JobClient(redis, following.s)
    photo = face_photo(size=(96, 96))
    plain = (await client.analyze("u1", photo)).faces[0]
    assert plain.adapter == ""
    other = next(c for c in CLASSES if c != plain.emotion)
    reg = AdapterRegistry(redis)
    await reg.save("v1", _leaning(other, "v1"), activate=True)
    assert await _reads(client, photo, "v1") == other
    await reg.save("v2", _leaning(plain.emotion, "v2"), activate=True)
    assert await _reads(client, photo, "v2") == plain.emotion
    assert await reg.rollback() == "v1"
    assert await _reads(client, photo, "v1") == other
    # a version for another model's classes is refused with one line; readings are the model's own
    wrong = Adapter("v9", CLASSES[:6], np.eye(6), np.zeros(6)).to_json()
    with caplog.at_level(logging.ERROR, logger="inference.worker.adapting"):
        await reg.save("v9", wrong, activate=True)
        assert await _reads(client, photo, "") == plain.emotion
    assert any("v9 not applied" in r.getMessage() for r in caplog.records)
    assert await reg.rollback() == "v1"
    assert await _reads(client, photo, "v1") == other


async def test_two_workers_never_fit_at_once(redis: Redis, redis_server: str) -> None:
    await _contribute(redis, people=22, per=12)
    settings = WorkerSettings(redis_url=redis_server, adapt_every_s=3600, adapt_poll_s=0.1)
    followers = [AdapterFollower(redis, settings, CLASSES, "", 0, f"w{i}") for i in range(2)]
    await asyncio.gather(*(f.maybe_refit() for f in followers))  # never fitted: both find one due
    tasks = [f._task for f in followers if f._task is not None]
    assert len(tasks) == 2
    await asyncio.gather(*tasks)
    reg = AdapterRegistry(redis)
    assert len(await reg.versions()) == 1  # one of them fitted; the other met the lock
    assert await reg.last_fit() is not None
    for f in followers:  # not due again within adapt_every_s
        f._next_schedule = 0.0
        await f.maybe_refit()
        assert f._task is None or f._task.done()
