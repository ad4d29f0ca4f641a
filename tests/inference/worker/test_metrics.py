"""Scrape a real worker process over HTTP and parse it with Prometheus's own parser."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis

from inference.api.client import JobClient
from inference.api.manifest import ModelManifest, model_id
from inference.api.settings import QueueSettings
from tests.bot.test_metrics import _scrape_when, _value
from tests.conftest import _free_port, face_photo
from tests.inference.worker.test_service import _env, _spawn_worker, _wait_for_workers

pytestmark = pytest.mark.timeout(180)


async def test_a_worker_process_exposes_jobs_stages_batches_and_its_model(
    redis: Redis, redis_server: str, tiny_model_dir: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    workers.append(_spawn_worker(_env(redis_server, tiny_model_dir, MOODRING_METRICS_PORT=str(port))))
    settings = QueueSettings(redis_url=redis_server, job_timeout_s=60)
    await _wait_for_workers(redis, 1, settings)
    client = JobClient(redis, settings)
    for user in range(3):
        assert len((await client.analyze(user, face_photo(size=(96, 96)))).faces) == 1
    samples = await _scrape_when(port, "moodring_jobs_total")
    assert _value(samples, "moodring_jobs_total", outcome="ok") == 3
    assert _value(samples, "moodring_job_latency_seconds_count") == 3
    assert _value(samples, "moodring_batch_size_count") >= 1
    stages = {s.labels["stage"] for s in samples if s.name == "moodring_stage_seconds_count"}
    assert {"decode", "detect"} <= stages, stages
    model = model_id(ModelManifest.load(tiny_model_dir / "manifest.json"))
    assert _value(samples, "moodring_worker_info", model=model, adapter="none") == 1
    assert any(s.name == "moodring_queue_depth" for s in samples)
