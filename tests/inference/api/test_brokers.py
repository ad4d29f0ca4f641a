"""Brokers are found by name: the default one, and a new module added to the package."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from inference.api.brokers.redis_streams import StreamTransport
from inference.api.contract import Job, image_key
from inference.api.plugins import BROKERS, module_names
from inference.api.settings import QueueSettings
from inference.api.transport import open_transport

NEW_BROKER = '''
from inference.api.brokers.redis_streams import StreamTransport

OPENED = []


class Tallied(StreamTransport):
    """A broker that counts the jobs it carries."""

    carried = 0

    async def submit(self, job, image, ttl_s, max_backlog):
        Tallied.carried += 1
        return await super().submit(job, image, ttl_s, max_backlog)


def open(redis, settings, dead_letter_stream="", blobs=None):
    OPENED.append(settings.stream)
    return Tallied(redis, settings, dead_letter_stream, blobs)
'''


def test_the_default_broker_is_redis_streams_and_an_unknown_one_is_refused(redis_server: str) -> None:
    assert module_names(BROKERS) == ["redis_streams"]
    assert QueueSettings(redis_url=redis_server).broker == "redis_streams"
    with pytest.raises(ValidationError, match="unknown broker 'nope'"):
        QueueSettings(broker="nope")


async def test_a_new_broker_module_is_found_by_its_name_and_carries_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis: Redis, redis_server: str
) -> None:
    import inference.api.brokers as package

    assert isinstance(open_transport(redis, QueueSettings(redis_url=redis_server)), StreamTransport)
    (tmp_path / "tallied.py").write_text(NEW_BROKER)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    try:
        assert "tallied" in module_names(BROKERS)
        settings = QueueSettings(redis_url=redis_server, broker="tallied", stream="t:jobs")
        queue = open_transport(redis, settings)
        module = sys.modules["inference.api.brokers.tallied"]
        assert module.OPENED == ["t:jobs"] and type(queue).__name__ == "Tallied"
        await queue.ensure_group()
        job = Job(
            job_id="brokerjob01",
            user_hash="u1",
            image_key=image_key("brokerjob01"),
            submitted_at=time.time(),
            deadline=time.time() + 30,
        )
        assert await queue.submit(job, b"photo", ttl_s=30, max_backlog=10)
        [delivery] = await queue.read_new("w1", count=5, block_ms=100)
        assert delivery.job.job_id == "brokerjob01" and module.Tallied.carried == 1
        assert (await queue.backlog()).total == 1
    finally:
        sys.modules.pop("inference.api.brokers.tallied", None)
