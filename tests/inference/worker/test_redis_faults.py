"""Redis refusing writes (OOM under noeviction, a READONLY replica, MISCONF): the worker keeps serving,
submitters get one typed error and their lock back, and the backlog cap holds under a race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from inference.api.client import JobClient
from inference.api.errors import Busy, JobTimeout, Unavailable
from inference.api.settings import QueueSettings
from inference.api.transport import open_transport
from inference.serve.checkpoint import load_model
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.predictor import Predictor
from inference.worker.service import Worker
from inference.worker.settings import WorkerSettings
from tests.conftest import _free_port, face_photo, spawn_redis, wait_for_worker

pytestmark = pytest.mark.timeout(240)


@dataclass
class Server:
    url: str
    redis: Redis


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A redis-server of this test's own (its configuration is changed under the worker)."""
    # cwd /proc: a snapshot can never be written there, which is how MISCONF is provoked below
    args = ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
    proc, url = spawn_redis(*args, workdir="/proc")
    redis = Redis.from_url(url)
    yield Server(url, redis)
    await redis.aclose()
    proc.terminate()
    proc.wait(timeout=10)


async def _refuse_writes(redis: Redis, how: str) -> None:
    if how == "oom":
        await redis.set("ballast", b"x" * 65536)
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory", used - 32768)  # below what is used: writes now fail
    elif how == "misconf":  # a snapshot that fails to write: every write is refused (MISCONF)
        await redis.config_set("save", "3600 1")
        await redis.config_set("stop-writes-on-bgsave-error", "yes")
        await redis.bgsave()
        while (await redis.info("persistence"))["rdb_last_bgsave_status"] != "err":
            await asyncio.sleep(0.05)
    else:  # a replica of a master that doesn't exist: every write is READONLY
        await redis.execute_command("REPLICAOF", "127.0.0.1", str(_free_port()))  # type: ignore[no-untyped-call]


async def _accept_writes(redis: Redis, how: str) -> None:
    if how == "oom":
        await redis.config_set("maxmemory", 0)
    elif how == "misconf":
        await redis.config_set("stop-writes-on-bgsave-error", "no")
        await redis.config_set("save", "")
    else:
        await redis.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("how", ["oom", "readonly", "misconf"])
async def test_worker_survives_refused_writes_and_serves_again(
    server: Server, tiny_model_dir: Path, how: str
) -> None:
    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    settings = WorkerSettings(redis_url=server.url, block_ms=50, job_timeout_s=30, claim_idle_ms=500)
    worker = Worker(Redis.from_url(server.url), predictor, settings, name=f"w-{how}")
    run = asyncio.create_task(worker.run())
    client = JobClient(server.redis, settings)
    try:
        await wait_for_worker(server.redis)
        assert len((await client.analyze("u0", face_photo(size=(96, 96)))).faces) == 1
        await _refuse_writes(server.redis, how)
        with pytest.raises(Unavailable):  # typed, not a raw OutOfMemoryError / ReadOnlyError
            await client.analyze("u1", face_photo(size=(96, 96)), timeout_s=5)
        await asyncio.sleep(1.5)  # the worker meets refused writes for a while
        assert not run.done(), "the worker exited on a Redis error"
        await _accept_writes(server.redis, how)
        await server.redis.delete("ballast")
        served = await client.analyze("u1", face_photo(size=(96, 96)), timeout_s=30)
        assert len(served.faces) == 1  # served again, and u1's lock was released after the failure
        assert [k async for k in server.redis.scan_iter(match="moodring:inflight:*")] == []
    finally:
        await _accept_writes(server.redis, how)
        worker.stop()
        await run
        await worker.redis.aclose()
        predictor.close()


async def test_the_backlog_cap_holds_when_many_submit_at_once(server: Server) -> None:
    settings = QueueSettings(redis_url=server.url, max_backlog=200, job_timeout_s=1)
    queue = open_transport(server.redis, settings)
    await queue.ensure_group()
    await queue.heartbeat("w-alive-but-slow")
    photo = face_photo(size=(64, 64))
    clients = [Redis.from_url(server.url) for _ in range(8)]
    outcomes: list[str] = []

    async def submit(client: Redis, user: str) -> None:
        try:
            await JobClient(client, settings).analyze(user, photo, timeout_s=1)
        except Busy:
            outcomes.append("busy")
        except JobTimeout:
            outcomes.append("queued")

    try:
        await asyncio.gather(*(submit(c, f"u{i}-{j}") for i, c in enumerate(clients) for j in range(40)))
    finally:
        for c in clients:
            await c.aclose()
    assert await server.redis.xlen(settings.stream) <= 200 and outcomes.count("queued") <= 200
    assert outcomes.count("busy") >= 320 - 200


async def test_dead_consumers_leave_the_group_live_ones_and_their_jobs_stay(server: Server) -> None:
    settings = QueueSettings(redis_url=server.url)
    queue = open_transport(server.redis, settings)
    await queue.ensure_group()
    await server.redis.xgroup_createconsumer(
        settings.stream, settings.group, "host-1-gone"
    )  # read nothing, died
    await server.redis.xadd(settings.stream, {"job": b"{}"})
    await queue.read_new("host-2-stuck", 1, 10)  # died holding a job: kept until it is claimed
    await asyncio.sleep(0.05)
    gone = await queue.prune_consumers(keep="host-3-me", idle_ms=10)
    left = {c["name"] for c in await server.redis.xinfo_consumers(settings.stream, settings.group)}
    assert gone == ["host-1-gone"] and left == {b"host-2-stuck"}
