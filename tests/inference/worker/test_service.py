"""Integration tests: real redis-server, real workers (subprocesses and in-process), tiny model."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inference.api.client import JobClient
from inference.api.contract import Job, JobResult, hash_user, image_key, inflight_key, result_key
from inference.api.errors import Busy, JobFailed, JobTimeout, Unavailable
from inference.api.settings import QueueSettings
from inference.api.transport import WORKERS_KEY, done_key, open_transport, waiting_key
from inference.serve.checkpoint import load_model
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.personal import Personal
from inference.serve.predictor import Predictor
from inference.worker.service import Worker
from inference.worker.settings import WorkerSettings
from tests.conftest import _free_port, face_photo, wait_for_worker

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[3]


def _env(redis_url: str, model_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env.update(
        PYTHONPATH=str(ROOT),
        MOODRING_REDIS_URL=redis_url,
        MOODRING_MODEL_DIR=str(model_dir),
        MOODRING_FACE_DETECTOR="full",
        MOODRING_TORCH_THREADS="1",
        MOODRING_BF16="0",
        MOODRING_CLAIM_IDLE_MS="400",
        MOODRING_BLOCK_MS="100",
        MOODRING_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def _spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inference.worker"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=None
    )


async def _wait_for_workers(redis: Redis, n: int, settings: QueueSettings) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if await redis.zcard(WORKERS_KEY) >= n:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("workers did not come up")


async def _leftovers(
    redis: Redis, settings: QueueSettings, within_s: float = 10.0
) -> tuple[int, int, list[bytes]]:
    """Entries, pending deliveries and photos left once the workers have settled.

    A worker answers a batch, then acks it (a crash between the two costs a redelivery, never
    an answer), so the last acks can trail the last answers; on a busy machine by seconds.
    """
    deadline = time.monotonic() + within_s
    while True:
        xlen = await redis.xlen(settings.stream)
        pending = (await redis.xpending(settings.stream, settings.group))["pending"]
        images = [k async for k in redis.scan_iter(match="moodring:job:*:img")]
        if (xlen, pending, images) == (0, 0, []) or time.monotonic() > deadline:
            return xlen, pending, images
        await asyncio.sleep(0.05)


async def test_200_jobs_20_submitters_2_workers(
    redis: Redis, redis_server: str, tiny_model_dir: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    settings = QueueSettings(redis_url=redis_server, job_timeout_s=120, max_backlog=1000)
    # Nobody dies here: a long claim timeout means no job is ever processed twice.
    env = _env(redis_server, tiny_model_dir, MOODRING_CLAIM_IDLE_MS="60000")
    workers += [_spawn_worker(env), _spawn_worker(env)]
    await _wait_for_workers(redis, 2, settings)
    client = JobClient(redis, settings)
    photo = face_photo(size=(96, 96))
    answered: list[tuple[int, int, str]] = []

    async def submitter(user: int) -> None:
        for i in range(10):
            res = await client.analyze(user, photo, want_heatmap=(i % 3 == 0))
            answered.append((user, i, res.job_id))
            assert len(res.faces) == 1
            assert (res.heatmap_jpeg_b64 is not None) == (i % 3 == 0)

    await asyncio.gather(*(submitter(u) for u in range(20)))
    assert len(answered) == 200
    assert len({job for _, _, job in answered}) == 200
    xlen, pending, images = await _leftovers(redis, settings)
    assert (xlen, pending, images) == (0, 0, [])
    assert [k async for k in redis.scan_iter(match="moodring:job:*:res")] == []
    served_by = {c["name"] for c in await redis.xinfo_consumers(settings.stream, settings.group)}
    assert len(served_by) == 2


async def test_sigkilled_worker_jobs_are_redelivered(
    redis: Redis, redis_server: str, tiny_model_dir: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    settings = QueueSettings(redis_url=redis_server, job_timeout_s=120, max_backlog=1000)
    env = _env(redis_server, tiny_model_dir, MOODRING_BATCH_SIZE="4")
    victim = _spawn_worker(env)
    workers.append(victim)
    await _wait_for_workers(redis, 1, settings)
    client = JobClient(redis, settings)
    photo = face_photo(size=(1000, 1000))  # big enough that a batch takes a while
    tasks = [asyncio.create_task(client.analyze(u, photo)) for u in range(8)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = await redis.xpending(settings.stream, settings.group)
        if info["pending"] > 0:
            break
        await asyncio.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    killed_pending = (await redis.xpending(settings.stream, settings.group))["pending"]
    workers.append(_spawn_worker(env))
    results = await asyncio.gather(*tasks)
    assert len({r.job_id for r in results}) == 8
    assert killed_pending > 0, "the kill should have left jobs pending on the dead consumer"
    xlen, pending, images = await _leftovers(redis, settings)
    assert (xlen, pending, images) == (0, 0, [])


async def test_a_worker_stopped_on_purpose_leaves_and_checks_are_refused_at_once(
    redis: Redis, redis_server: str, tiny_model_dir: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    settings = QueueSettings(redis_url=redis_server, job_timeout_s=20, worker_alive_s=20)
    only = _spawn_worker(_env(redis_server, tiny_model_dir))
    workers.append(only)
    await _wait_for_workers(redis, 1, settings)
    only.send_signal(signal.SIGTERM)  # a deploy, a scale-down: a clean stop
    assert only.wait(timeout=60) == 0
    assert await redis.zcard(WORKERS_KEY) == 0  # it left; its last beat no longer counts
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await JobClient(redis, settings).analyze(7, face_photo())
    assert time.monotonic() - started < 2  # told at once, not after the alive window


class PoisonPredictor:
    """Wraps the real predictor; crashes on photos 333 px wide, every time."""

    def __init__(self, inner: Predictor) -> None:
        self.inner = inner
        self.crashes = 0

    def warm_up(self) -> None:
        self.inner.warm_up()

    def analyze_many(
        self,
        items: Sequence[bytes],
        want_heatmap: Sequence[bool] | None = None,
        personal: Sequence[Personal | None] | None = None,
        adapter: Any = None,
    ) -> list[Any]:
        import io

        from PIL import Image

        if any(Image.open(io.BytesIO(b)).width == 333 for b in items):
            self.crashes += 1
            raise RuntimeError("poisoned input")
        return self.inner.analyze_many(items, want_heatmap, personal, adapter=adapter)


async def test_poison_job_is_dead_lettered_and_others_served(
    redis: Redis, redis_server: str, tiny_model_dir: Path
) -> None:
    model, manifest = load_model(tiny_model_dir)
    predictor = PoisonPredictor(Predictor(model, manifest, FullFrameDetector(), bf16=False))
    settings = WorkerSettings(
        redis_url=redis_server, claim_idle_ms=300, block_ms=50, max_deliveries=3, job_timeout_s=60
    )
    worker = Worker(Redis.from_url(redis_server), predictor, settings, name="w-poison")
    run = asyncio.create_task(worker.run())
    await wait_for_worker(redis)
    client = JobClient(redis, settings)
    try:
        poison = asyncio.create_task(client.analyze("poison", face_photo(size=(333, 300)), timeout_s=20))
        good = [asyncio.create_task(client.analyze(u, face_photo(size=(120, 120)))) for u in range(5)]
        for g in await asyncio.gather(*good):
            assert len(g.faces) == 1
        with pytest.raises(JobFailed) as err:
            await poison
        assert err.value.code == "internal"
        dead = await redis.xrange(settings.dead_letter_stream)
        assert len(dead) == 1 and dead[0][1][b"reason"] == b"crashed the model"
        assert hash_user("poison").encode() not in repr(dead).encode()  # it would outlive /mood forget
        assert predictor.crashes >= 2  # in its batch and alone: dead-lettered then, not after N claims
        await redis.xadd(settings.stream, {"job": b"{not json"})  # a malformed entry: a dead letter too
        await asyncio.sleep(1.0)
        dead = await redis.xrange(settings.dead_letter_stream)
        assert [f[b"reason"] for _, f in dead] == [b"crashed the model", b"malformed"]
        after = await client.analyze("after", face_photo(size=(120, 120)))
        assert len(after.faces) == 1
        xlen, pending, images = await _leftovers(redis, settings)
        assert (xlen, pending, images) == (0, 0, [])
    finally:
        worker.stop()
        await run
        await worker.redis.aclose()
        predictor.inner.close()


async def test_backlog_over_cap_is_refused_immediately(redis: Redis, redis_server: str) -> None:
    settings = QueueSettings(redis_url=redis_server, max_backlog=5)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    await queue.heartbeat("w-busy")  # a worker is up, the queue is full
    for i in range(5):
        await redis.xadd(settings.stream, {"job": f"{i}"})
    client = JobClient(redis, settings)
    t = time.monotonic()
    with pytest.raises(Busy):
        await client.analyze(1, face_photo())
    assert time.monotonic() - t < 2.0
    assert [k async for k in redis.scan_iter(match="moodring:job:*:img")] == []


async def test_one_job_in_flight_per_user(redis: Redis, redis_server: str) -> None:

    settings = QueueSettings(redis_url=redis_server)
    queue = open_transport(redis, settings)
    await queue.ensure_group()
    client = JobClient(redis, settings)
    t0 = time.monotonic()
    with pytest.raises(Unavailable):  # nobody consumes the queue: said at once, not after 2 s
        await client.analyze(7, face_photo(), timeout_s=2)
    assert time.monotonic() - t0 < 2
    await queue.heartbeat("w-that-never-reads")  # a worker that is alive but stuck
    first = asyncio.create_task(client.analyze(7, face_photo(), timeout_s=2))
    await asyncio.sleep(0.3)
    with pytest.raises(Busy):
        await client.analyze(7, face_photo(), timeout_s=2)
    with pytest.raises(JobTimeout):
        await first
    assert [k async for k in redis.scan_iter(match="moodring:*flight*")] == []


@dataclass
class AofRedis:
    """A redis-server with AOF fsync'ed on every write, a client on it, and one worker."""

    url: str
    redis: Redis
    settings: QueueSettings
    cmd: list[str]
    server: subprocess.Popen[bytes]

    def restart(self, crash: bool) -> None:
        """Stop the server (SIGKILL when ``crash``, else a clean SIGTERM) and start it again."""
        if crash:
            self.server.kill()
        else:
            self.server.terminate()
        self.server.wait(timeout=10)
        self.server = _start_server(self.cmd)


def _start_server(cmd: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc


@pytest.fixture
async def aof(
    tmp_path: Path, tiny_model_dir: Path, workers: list[subprocess.Popen[bytes]]
) -> AsyncIterator[AofRedis]:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes"]
    cmd += ["--appendfsync", "always", "--save", "", "--dir", str(tmp_path)]
    stack = AofRedis(
        url,
        Redis.from_url(url),
        QueueSettings(redis_url=url, job_timeout_s=60, max_backlog=1000, result_ttl_s=120),
        cmd,
        _start_server(cmd),
    )
    try:
        workers.append(_spawn_worker(_env(url, tiny_model_dir, MOODRING_RESULT_TTL_S="120")))
        await _wait_for_workers(stack.redis, 1, stack.settings)
        yield stack
    finally:
        await stack.redis.aclose()
        for p in workers:
            p.terminate()
        stack.server.terminate()
        stack.server.wait(timeout=10)


async def test_redis_restart_with_aof(aof: AofRedis) -> None:
    client = JobClient(aof.redis, aof.settings)
    photo = face_photo(size=(96, 96))
    before = [await client.analyze(u, photo) for u in range(3)]
    assert all(len(r.faces) == 1 for r in before)
    aof.restart(crash=False)
    t = time.monotonic()
    after = None
    while time.monotonic() - t < 30:
        try:
            after = await client.analyze("after-restart", photo, timeout_s=20)
            break
        except (RedisError, JobTimeout):
            await asyncio.sleep(0.2)
    assert after is not None and len(after.faces) == 1
    assert time.monotonic() - t < 15, "new jobs should flow within seconds of the restart"
    assert await aof.redis.xlen(aof.settings.stream) == 0


async def test_acked_results_survive_a_redis_crash(aof: AofRedis) -> None:
    """Results a worker acked before Redis is SIGKILLed are still there after the restart."""
    redis, settings = aof.redis, aof.settings
    await open_transport(redis, settings).ensure_group()
    # Submit without waiting: nobody collects these results before the crash.
    ids = []
    for i in range(6):
        job = Job(
            job_id=f"crashjob{i:04d}",
            user_hash=f"u{i}",
            image_key=image_key(f"crashjob{i:04d}"),
            submitted_at=time.time(),
            deadline=time.time() + 60,
        )
        await redis.set(job.image_key, face_photo(size=(96, 96)), ex=60)
        await redis.set(waiting_key(job.job_id), "1", ex=60)  # its caller waits (as submit sets it)
        await redis.xadd(settings.stream, {"job": job.model_dump_json()})
        ids.append(job.job_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pending = (await redis.xpending(settings.stream, settings.group))["pending"]
        done = [await redis.exists(result_key(j)) for j in ids]
        if all(done) and pending == 0 and await redis.xlen(settings.stream) == 0:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("worker did not ack the jobs")
    aof.restart(crash=True)
    for _ in range(50):
        try:
            await redis.ping()
            break
        except RedisError:  # still starting
            await asyncio.sleep(0.1)
    for job_id in ids:
        item = await redis.lpop(result_key(job_id))
        assert item is not None, f"acked result of {job_id} was lost"
        result = JobResult.model_validate_json(item)
        assert result.job_id == job_id and len(result.faces) == 1
    assert [k async for k in redis.scan_iter(match="moodring:job:*:img")] == []


async def test_after_a_redis_crash_mid_job_the_same_user_is_not_told_busy(aof: AofRedis) -> None:
    """The user's lock comes back from the AOF with the job it guarded; once that job is settled
    or gone, the lock blocks nobody (it did for the lock's whole TTL, 65 s here)."""
    redis, settings = aof.redis, aof.settings
    client = JobClient(redis, settings)
    photo = face_photo(size=(1000, 1000))  # a job that takes a while
    flight = asyncio.create_task(client.analyze("crashed-user", photo))
    lock = inflight_key(hash_user("crashed-user"))
    deadline = time.monotonic() + 60
    while not (await redis.xpending(settings.stream, settings.group))["pending"]:
        assert time.monotonic() < deadline, "the job was never taken"
        await asyncio.sleep(0.005)
    old_job = (await redis.get(lock)).decode()
    aof.server.kill()  # mid-job
    aof.server.wait(timeout=10)
    await asyncio.sleep(0.3)
    flight.cancel()  # the bot gives up on it; its clean-up can't reach Redis to drop the lock
    with pytest.raises(asyncio.CancelledError):
        await flight
    aof.server = _start_server(aof.cmd)
    for _ in range(100):
        try:
            await redis.ping()
            break
        except RedisError:
            await asyncio.sleep(0.1)
    assert await redis.get(lock) == old_job.encode()  # back from the AOF
    deadline = time.monotonic() + 60
    while not await redis.exists(done_key(old_job)):  # settled by the worker after the restart
        backlog = (
            await redis.xlen(settings.stream)
            + (await redis.xpending(settings.stream, settings.group))["pending"]
        )
        if backlog == 0:  # or gone
            break
        assert time.monotonic() < deadline, "the restored job was never settled"
        await asyncio.sleep(0.1)
    assert await redis.ttl(lock) > 20  # still far from expiring: only the rule lets the user in
    again = await client.analyze("crashed-user", face_photo(size=(96, 96)))
    assert len(again.faces) == 1


async def test_the_worker_applies_the_senders_prior_and_calm_face_from_the_job(
    redis: Redis, redis_server: str, tiny_model_dir: Path
) -> None:
    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    settings = WorkerSettings(redis_url=redis_server, block_ms=50, job_timeout_s=60)
    worker = Worker(Redis.from_url(redis_server), predictor, settings, name="w-personal")
    run = asyncio.create_task(worker.run())
    await wait_for_worker(redis)
    client = JobClient(redis, settings)
    photo = face_photo(size=(96, 96))
    try:
        plain = (await client.analyze("p1", photo)).faces[0]
        assert not plain.baseline_applied and not plain.prior_applied and plain.raw_probs == {}
        calm = {c: (0.96 if c == plain.emotion else 0.04 / 6) for c in plain.probs}  # rests on this class
        relative = (await client.analyze("p1", photo, baseline=calm)).faces[0]
        assert relative.baseline_applied and relative.emotion != plain.emotion
        assert relative.raw_probs == pytest.approx(plain.probs, abs=1e-5)
        both = (await client.analyze("p1", photo, baseline=calm, prior={plain.emotion: 1e4})).faces[0]
        assert (
            both.baseline_applied and both.prior_applied and both.emotion == plain.emotion
        )  # weights multiply
    finally:
        worker.stop()
        await run
        await worker.redis.aclose()
        predictor.close()


async def test_a_stalled_worker_resumed_after_the_claim_answers_no_one(
    redis: Redis, redis_server: str, tiny_model_dir: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    settings = QueueSettings(redis_url=redis_server, job_timeout_s=120, max_backlog=1000)
    env = _env(redis_server, tiny_model_dir)  # claim after 400 ms idle
    stalled = _spawn_worker(env)
    workers.append(stalled)
    await _wait_for_workers(redis, 1, settings)
    client = JobClient(redis, settings)
    photo = face_photo(size=(1000, 1000))
    tasks = [asyncio.create_task(client.analyze(u, photo)) for u in range(4)]
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline and not (await redis.xpending(settings.stream, settings.group))["pending"]
    ):
        await asyncio.sleep(0.005)
    stalled.send_signal(signal.SIGSTOP)  # frozen mid-batch, e.g. a long GC or a paused VM
    try:
        workers.append(_spawn_worker(env))
        results = await asyncio.gather(*tasks)
    finally:
        stalled.send_signal(signal.SIGCONT)  # it wakes up and finishes its (now late) batch
    assert len(results) == 4 and all(len(r.faces) == 1 for r in results)  # one answer each
    await asyncio.sleep(3)
    assert [k async for k in redis.scan_iter(match="moodring:job:*:res")] == []  # no late heatmap left
    assert [k async for k in redis.scan_iter(match="moodring:job:*:img")] == []


async def test_an_answer_in_another_contract_version_fails_typed(redis: Redis, redis_server: str) -> None:
    """A worker still on results v2 (a PNG heatmap) during an upgrade: the caller gets "internal",
    the bot says "try again", nothing crashes."""
    settings = QueueSettings(redis_url=redis_server)
    queue = open_transport(redis, settings)
    old = '{"schema_version": 2, "job_id": "abcdefgh12", "heatmap_png_b64": "iVBORw0KGgo="}'
    await redis.rpush(result_key("abcdefgh12"), old)
    with pytest.raises(JobFailed) as failed:
        await queue.wait_result("abcdefgh12", 2.0)
    assert failed.value.code == "internal"
    current = JobResult(job_id="abcdefgh12", heatmap_jpeg_b64="/9j/")
    await redis.rpush(result_key("abcdefgh12"), current.model_dump_json())
    assert await queue.wait_result("abcdefgh12", 2.0) == current


class SlowPredictor:
    """The real predictor, but every batch takes ``seconds`` longer (a big batch on a small CPU)."""

    def __init__(self, inner: Predictor, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def warm_up(self) -> None:
        self.inner.warm_up()

    def analyze_many(self, items: Sequence[bytes], *args: Any, **kwargs: Any) -> list[Any]:
        time.sleep(self.seconds)
        return self.inner.analyze_many(items, *args, **kwargs)


async def test_a_busy_worker_keeps_beating_and_a_dead_one_is_noticed_within_the_window(
    redis: Redis, redis_server: str, tiny_model_dir: Path
) -> None:
    """The alive window is a few beats, not the longest batch: a worker stuck in a 3 s batch
    still counts as up under a 0.6 s window, and one that stops beating is down 0.6 s later."""
    model, manifest = load_model(tiny_model_dir)
    predictor = SlowPredictor(Predictor(model, manifest, FullFrameDetector(), bf16=False), 3.0)
    settings = WorkerSettings(
        redis_url=redis_server, block_ms=50, job_timeout_s=60, worker_beat_s=0.2, worker_alive_s=0.6
    )
    worker = Worker(Redis.from_url(redis_server), predictor, settings, name="w-slow")
    run = asyncio.create_task(worker.run())
    await wait_for_worker(redis)
    queue = open_transport(redis, settings)
    client = JobClient(redis, settings)
    try:
        job = asyncio.create_task(client.analyze("slow", face_photo(size=(96, 96))))
        while not (await redis.xpending(settings.stream, settings.group))["pending"]:
            await asyncio.sleep(0.01)
        seen = []
        for _ in range(20):  # 2 s inside the 3 s batch
            seen.append(await queue.workers_alive(settings.worker_alive_s))
            await asyncio.sleep(0.1)
        assert seen == [1] * 20
        assert len((await job).faces) == 1
        await redis.zadd(WORKERS_KEY, {"w-crashed": time.time()})  # a worker that beat once, then died
        assert await queue.workers_alive(settings.worker_alive_s) == 2
        await asyncio.sleep(0.8)
        assert await queue.workers_alive(settings.worker_alive_s) == 1
    finally:
        worker.stop()
        await run
        await worker.redis.aclose()


def test_an_alive_window_under_two_beats_stops_start_up() -> None:
    with pytest.raises(ValueError, match="MOODRING_WORKER_ALIVE_S"):
        QueueSettings(worker_beat_s=2, worker_alive_s=3)
