"""`moodring worker --check`: healthy only with a recent beat on this host, and says what it serves."""

from __future__ import annotations

import socket

import pytest
from redis.asyncio import Redis

from inference.api.settings import QueueSettings
from inference.api.transport import open_transport
from inference.worker.__main__ import check
from inference.worker.settings import WorkerSettings


async def test_the_check_names_the_model_and_precision_this_hosts_workers_serve(
    redis: Redis, redis_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = WorkerSettings(redis_url=redis_server)
    assert await check(settings) == 1
    assert "no recent worker heartbeat" in capsys.readouterr().err
    beats = open_transport(redis, QueueSettings(redis_url=redis_server))
    await beats.heartbeat(f"{socket.gethostname()}-4242", "abf30fe23b79", "int8")
    await beats.heartbeat("elsewhere-1", "000000000000", "fp32")  # another host's worker: not ours
    assert await check(settings) == 0
    assert capsys.readouterr().out.strip() == "healthy (serving abf30fe23b79 in int8)"
    # what deploys compare stays the model id alone
    assert (await beats.alive_workers(60))[f"{socket.gethostname()}-4242"] == "abf30fe23b79"
