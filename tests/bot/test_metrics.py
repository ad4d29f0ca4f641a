"""Scrape a real worker process and a real bot process (fake Discord) over HTTP, and parse what
they expose with Prometheus's own parser: the series the rules and the dashboard read are there,
with the values the traffic sent through them should give."""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis.asyncio import Redis

from tests.bot.conftest import bot_process_env, run_worker
from tests.bot.helpers import accept_consent, check, custom_ids
from tests.conftest import _free_port, face_photo
from tests.fakediscord import FakeDiscord

pytestmark = pytest.mark.timeout(180)


def _scrape(port: int) -> list[Sample]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


async def _scrape_when(port: int, ready: str, within_s: float = 60) -> list[Sample]:
    """Scrape until a sample named ``ready`` is there (the process may still be starting)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            samples = await asyncio.to_thread(_scrape, port)
            if any(s.name == ready for s in samples):
                return samples
        except OSError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {ready} on :{port}")
        await asyncio.sleep(0.2)


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert found, (name, labels)
    return sum(found)


async def test_a_bot_process_exposes_interactions_checks_rate_limits_and_the_system(
    fake: FakeDiscord, redis: Redis, redis_server: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    port = _free_port()
    env = bot_process_env(
        fake,
        redis_server,
        MOODRING_BOT_METRICS_PORT=str(port),
        MOODRING_COOLDOWN_S="0",
        MOODRING_JOB_TIMEOUT_S="60",
        MOODRING_LOG_LEVEL="WARNING",
    )
    async with run_worker(redis_server, tiny_model_dir):
        bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=env)
        try:
            await fake.wait_ready(1, within=60)
            await accept_consent(fake, 77)
            fake.rate_limit("POST", r"^/webhooks/")  # the check's reply gets one 429 first
            _, reading = await check(fake, 77)
            assert any(c.startswith("mr:") for c in custom_ids(reading))
            ix = await fake.slash(78, "mood", "check", attachments={"photo": fake.upload(face_photo())})
            await fake.acked(ix)
            assert "privacy" in (await fake.reply(ix))["content"].lower()  # no consent yet: refused
            samples = await _scrape_when(port, "moodring_bot_checks_total")
        finally:
            bot.terminate()
            await bot.wait()
    assert _value(samples, "moodring_bot_interactions_total", command="mood check", outcome="ok") == 2
    assert _value(samples, "moodring_bot_interactions_total", command="consent", outcome="ok") == 1
    assert _value(samples, "moodring_bot_reply_seconds_count", command="mood check") == 2
    assert _value(samples, "moodring_bot_checks_total", outcome="ok") == 1
    assert _value(samples, "moodring_bot_checks_total", outcome="consent_needed") == 1
    assert _value(samples, "moodring_bot_rate_limits_total", scope="user") == 1
    assert _value(samples, "moodring_workers_alive") == 1
    assert _value(samples, "moodring_redis_persisting", role="durable") == 0  # the test Redis: no disk
    assert _value(samples, "moodring_redis_memory_used_bytes", role="blobs") > 0
