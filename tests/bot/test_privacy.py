"""Privacy and honest answers at the edges (issue 17): each test failed on the old main."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot import texts
from bot.disk_forget import GATE_KEY, OWED_KEY, bound_s
from bot.mood_flow import check_mood
from bot.store import UserStore
from inference.api.contract import hash_user
from inference.api.errors import NoFaceFound
from inference.api.settings import QueueSettings
from inference.api.transport import open_transport
from tests.bot.conftest import TEST_SALT, BotFactory, bot_process_env, run_worker, uh
from tests.bot.helpers import accept_consent, check, custom_ids, reading_text, start_session
from tests.bot.test_mood_flow import PROBS, FakeAnalyzer, _photo, _rec
from tests.conftest import face_photo
from tests.fakediscord import BOT_USER, CHANNEL_ID, EPHEMERAL, FakeDiscord

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

ALICE, BOB = 4242, 5151


async def _anything_about(redis: Redis, user_id: int) -> list[str]:
    """Every key whose name or value mentions the user's raw id or hash."""
    marks = (str(user_id).encode(), uh(user_id).encode(), hash_user(user_id).encode())
    found = []
    async for key in redis.scan_iter(match="*"):
        kind = (await redis.type(key)).decode()
        if kind == "stream":
            blob = repr(await redis.xrange(key)).encode()
        elif kind == "hash":
            blob = repr(await redis.hgetall(key)).encode()
        elif kind == "set":
            blob = repr(await redis.smembers(key)).encode()
        elif kind == "list":
            blob = repr(await redis.lrange(key, 0, -1)).encode()
        elif kind == "zset":
            blob = repr(await redis.zrange(key, 0, -1)).encode()
        else:
            blob = repr(await redis.get(key)).encode()
        if any(m in key or m in blob for m in marks):
            found.append(key.decode())
    return found


async def _forget(fake: FakeDiscord, user_id: int) -> str:
    ix = await fake.slash(user_id, "mood", "forget")
    await fake.acked(ix)
    confirm = await fake.reply(ix)
    click = await fake.click(user_id, confirm, f"mr:forget:{user_id}:yes")
    assert (await fake.acked(click))["type"] == 6  # acknowledged before any deleting
    await fake.wait_for(lambda: "deleted" in fake.messages[int(confirm["id"])]["content"], 10, "forget")
    return str(fake.messages[int(confirm["id"])]["content"])


async def test_a_stale_correction_after_forget_brings_nothing_back(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    _, reading = await check(fake, ALICE)
    fix = next(c for c in custom_ids(reading) if c.startswith(f"mr:fix:{ALICE}:"))
    assert "records" in await _forget(fake, ALICE)
    assert await _anything_about(redis, ALICE) == []
    stale = await fake.click(ALICE, reading, fix, values=["happy"])
    await fake.acked(stale)
    assert "forget you" in (await fake.reply(stale))["content"]
    assert await _anything_about(redis, ALICE) == []  # no corrections, prior or recs came back


async def test_forget_leaves_sessions_hands_on_the_host_and_says_what_went(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    board = await start_session(fake, ALICE)
    join = await fake.click(BOB, board, f"mr:sess:{CHANNEL_ID}:join")
    await fake.acked(join)
    assert await bot.services.sessions.is_host(CHANNEL_ID, ALICE)
    said = await _forget(fake, ALICE)
    assert "deleted 1 record." in said  # her session membership (the old code said "0 records")
    view = await bot.services.sessions.view(CHANNEL_ID)
    assert view.host_id == BOB and view.members == (BOB,)
    assert await _anything_about(redis, ALICE) == []


async def test_declining_consent_leaves_sessions_too(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    await start_session(fake, ALICE)
    ix = await fake.slash(ALICE, "mood", "privacy")
    await fake.acked(ix)
    prompt = await fake.reply(ix)
    decline = await fake.click(ALICE, prompt, f"mr:consent:{ALICE}:no")
    assert (await fake.acked(decline))["type"] == 6
    await fake.wait_for(
        lambda: "stores nothing" in fake.messages[int(prompt["id"])]["content"], 10, "decline"
    )
    assert not await bot.services.sessions.exists(CHANNEL_ID)  # the only member left: it ended
    assert await _anything_about(redis, ALICE) == []


async def test_read_mood_reads_only_your_own_photos(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    bobs = fake.message(BOB, [fake.upload(face_photo(size=(160, 160)))])
    ix = await fake.context_menu(ALICE, "Read mood", bobs)
    answer = await fake.acked(ix)
    assert answer["type"] == 4 and "posted yourself" in answer["data"]["content"]
    bots = fake.message(int(BOT_USER["id"]), [fake.upload(face_photo(size=(160, 160)))])
    bots["author"] = BOT_USER
    ix = await fake.context_menu(ALICE, "Read mood", bots)
    assert "posted yourself" in (await fake.acked(ix))["data"]["content"]
    assert await bot_history_len(redis, ALICE) == 0
    own = fake.message(ALICE, [fake.upload(face_photo(size=(160, 160)))])
    ix = await fake.context_menu(ALICE, "Read mood", own)
    await fake.acked(ix)
    assert "You look" in reading_text(await fake.reply(ix))
    assert await bot_history_len(redis, ALICE) == 1


async def bot_history_len(redis: Redis, user_id: int) -> int:
    return int(await redis.xlen(f"moodring:user:{{{uh(user_id)}}}:history"))


async def test_with_no_worker_the_user_hears_at_once_that_analysis_is_down(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    await start_bot(job_timeout_s=20)
    await accept_consent(fake, ALICE)
    t0 = time.monotonic()
    _, msg = await check(fake, ALICE)
    assert time.monotonic() - t0 < 2
    assert "down right now" in msg["content"] and msg["flags"] & EPHEMERAL
    _, msg = await check(fake, ALICE)  # and it didn't use up the cooldown
    assert "down right now" in msg["content"]


async def test_a_failed_check_does_not_use_up_the_cooldown(redis: Redis) -> None:
    store = UserStore(redis, tuple(PROBS))
    await store.set_consent(20, True)
    failed = await check_mood(
        20, _photo, store=store, analyzer=FakeAnalyzer(NoFaceFound()), recommender=_rec(redis), cooldown_s=30
    )
    assert failed.error == "no_face"
    ok = await check_mood(
        20, _photo, store=store, analyzer=FakeAnalyzer(), recommender=_rec(redis), cooldown_s=30
    )
    assert ok.error is None
    again = await check_mood(
        20, _photo, store=store, analyzer=FakeAnalyzer(), recommender=_rec(redis), cooldown_s=30
    )
    assert again.error == "cooldown"  # a successful one still does


async def test_a_mention_with_text_is_not_an_error(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, caplog: pytest.LogCaptureFixture
) -> None:
    await start_bot()
    with caplog.at_level(logging.ERROR):
        await fake.post(ALICE, [], dm=False, mention_bot=True, text="hello there, how are you?")
        await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_mention_with_closed_dms_reads_and_keeps_nothing_and_says_so_in_one_line(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    fake.closed_dms.add(ALICE)
    before = len(fake.channel_messages(CHANNEL_ID))
    await fake.post(ALICE, [fake.upload(face_photo(size=(160, 160)))], dm=False, mention_bot=True)
    said = await fake.wait_for(lambda: fake.channel_messages(CHANNEL_ID)[before:], 30, "a channel line")
    await asyncio.sleep(0.5)
    assert len(said) == 1 and "DMs" in said[0]["content"] and not said[0]["embeds"]
    assert not said[0]["attachments"]  # no reading, no heatmap in the channel
    assert await bot_history_len(redis, ALICE) == 0  # nothing analysed or stored
    assert await redis.exists("moodring:jobs") == 0 or await redis.xlen("moodring:jobs") == 0


async def test_keys_use_the_deployments_secret_salt_and_session_indexes_expire(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    await accept_consent(fake, ALICE)
    await check(fake, ALICE)
    keys = [k.decode() async for k in redis.scan_iter(match="moodring:user:*")]
    assert keys and all(uh(ALICE) in k for k in keys)
    public = hash_user(ALICE)  # the old constant salt: anyone could compute it from a Discord id
    assert not [k async for k in redis.scan_iter(match=f"*{public}*")]
    await start_session(fake, ALICE)
    index = f"moodring:user:{{{uh(ALICE)}}}:sessions"
    ttl = await redis.ttl(index)
    assert 0 < ttl <= bot.services.settings.session_idle_s + 60  # the index never outlives its sessions


def test_the_bot_needs_a_per_deployment_salt() -> None:
    from pydantic import ValidationError

    from bot.settings import BotSettings

    with pytest.raises(ValidationError, match="user_salt"):
        BotSettings(discord_token="t")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="user_salt"):
        BotSettings(discord_token="t", user_salt="short")  # type: ignore[arg-type]


async def test_accepting_consent_reads_the_photo_already_sent(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    _, prompt = await check(fake, ALICE)
    assert "AI model" in prompt["content"] and await bot_history_len(redis, ALICE) == 0
    accept = next(c for c in custom_ids(prompt) if c.startswith(f"mr:consent:{ALICE}:yes:"))
    click = await fake.click(ALICE, prompt, accept)
    assert (await fake.acked(click))["type"] == 7
    reading = await fake.reply(click, 1)
    assert "You look" in reading_text(reading)  # no re-upload
    assert await bot_history_len(redis, ALICE) == 1
    assert [k async for k in redis.scan_iter(match="moodring:pending:*")] == []  # the link is gone
    token = accept.rsplit(":", 1)[1]
    assert await bot.services.pending.take(token, ALICE) is None  # the held photo is read once


async def test_a_check_survives_its_bot_process_dying(
    fake: FakeDiscord,
    start_bot: BotFactory,
    redis: Redis,
    redis_server: str,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    from inference.api.settings import QueueSettings
    from inference.api.transport import open_transport
    from inference.serve.checkpoint import load_model
    from inference.serve.detectors.full import FullFrameDetector
    from inference.serve.predictor import Predictor
    from inference.worker.service import Worker
    from inference.worker.settings import WorkerSettings

    await UserStore(redis, CLASSES, salt=TEST_SALT).set_consent(ALICE, True)
    await open_transport(redis, QueueSettings()).heartbeat("w-busy-elsewhere")  # a worker is "up"
    env = bot_process_env(
        fake,
        redis_server,
        MOODRING_JOB_TIMEOUT_S="60",
        MOODRING_COOLDOWN_S="0",
        MOODRING_LOG_LEVEL="WARNING",
    )
    first = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=env)
    try:
        await fake.wait_ready(1, within=60)
        ix = await fake.slash(
            ALICE, "mood", "check", attachments={"photo": fake.upload(face_photo(size=(160, 160)))}
        )
        assert (await fake.acked(ix))["type"] == 5  # "thinking…"
        while not await redis.exists("moodring:jobs") or not await redis.xlen("moodring:jobs"):
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # the bot process dies with the job queued
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()

    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    worker = Worker(
        Redis.from_url(redis_server),
        predictor,
        WorkerSettings(redis_url=redis_server, block_ms=50),
        name="w2",
    )
    run = asyncio.create_task(worker.run())
    try:
        await start_bot(job_timeout_s=60)  # another bot process takes the orphaned check over
        reading = await fake.reply(ix, within=60)
        # the restart path edits the plain deferred reply: the classic embed (the V2 fallback)
        assert reading["embeds"] and "You look" in reading["embeds"][0]["title"]
        assert await bot_history_len(redis, ALICE) == 1
        assert await redis.zcard("moodring:{checks}") == 0
    finally:
        worker.stop()
        await run
        await worker.redis.aclose()
        predictor.close()


async def test_a_forget_while_the_photo_is_queued_answers_in_one_line_and_keeps_nothing(
    fake: FakeDiscord,
    start_bot: BotFactory,
    redis_server: str,
    redis: Redis,
    tiny_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    beat = open_transport(redis, QueueSettings())
    await beat.heartbeat("w-not-yet")  # the bot queues the photo: a worker looks alive
    reading = asyncio.create_task(check(fake, ALICE))
    while not await redis.exists("moodring:jobs") or not await redis.xlen("moodring:jobs"):
        await asyncio.sleep(0.05)
    assert "deleted" in await _forget(fake, ALICE)  # forgotten while the photo waits in the queue
    with caplog.at_level(logging.INFO):
        async with run_worker(redis_server, tiny_model_dir):  # then a worker reads it
            _, reply = await reading
    assert reply["content"] == texts.error("forgotten_during_check")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await _anything_about(redis, ALICE) == []


async def _rewritten(redis: Redis, within_s: float = 30) -> None:
    """Until no AOF rewrite or snapshot runs, nor is scheduled."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        p = await redis.info("persistence")
        if not (p["aof_rewrite_in_progress"] or p["aof_rewrite_scheduled"] or p["rdb_bgsave_in_progress"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the rewrite did not finish")


def _files_mentioning(workdir: Path, marks: tuple[bytes, ...]) -> list[str]:
    return [
        str(f.relative_to(workdir))
        for f in workdir.rglob("*")
        if f.is_file() and any(m in f.read_bytes() for m in marks)
    ]


async def test_after_forget_no_file_the_durable_redis_writes_holds_the_user(
    fake: FakeDiscord, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Compose's durable Redis (AOF on, plus snapshots here): after /mood forget and the bound
    /mood privacy states, neither the user's hash nor their Discord id is in any of its files."""
    from tests.bot.conftest import bot_factory
    from tests.conftest import spawn_redis

    workdir = tmp_path / "redis"
    workdir.mkdir()
    server, url = spawn_redis(
        "--appendonly", "yes", "--appendfsync", "always", "--save", "3600 1", workdir=workdir
    )
    redis = Redis.from_url(url)
    marks = (str(ALICE).encode(), uh(ALICE).encode())
    try:
        async with run_worker(url, tiny_model_dir), bot_factory(fake, url) as start:
            bot = await start(forget_rewrite_s=10)
            await accept_consent(fake, ALICE)
            await check(fake, ALICE)
            board = await start_session(fake, ALICE)
            join = await fake.click(BOB, board, f"mr:sess:{CHANNEL_ID}:join")
            await fake.acked(join)
            await redis.bgsave()  # a snapshot that holds her too
            await _rewritten(redis)
            assert _files_mentioning(workdir, marks), "the setup should have written her to disk"
            ix = await fake.slash(ALICE, "mood", "privacy")
            await fake.acked(ix)
            bound = texts.duration(bound_s(bot.services.settings.forget_rewrite_s))
            assert f"from its files on disk within {bound}" in (await fake.reply(ix))["content"]
            started = time.monotonic()
            await _forget(fake, ALICE)
            await _rewritten(redis)
            await asyncio.sleep(0.5)  # the old files are deleted in the background after the rewrite
            assert _files_mentioning(workdir, marks) == []
            assert time.monotonic() - started < bound_s(bot.services.settings.forget_rewrite_s)
            # a second forget inside the interval owes a rewrite the loop starts once it may
            await accept_consent(fake, BOB)
            await check(fake, BOB)
            await _forget(fake, BOB)
            assert await redis.exists(OWED_KEY)
            await redis.delete(GATE_KEY)  # the interval has passed
            assert await bot.services.disk_forget.compact()
            await _rewritten(redis)
            await asyncio.sleep(0.5)
            assert _files_mentioning(workdir, (str(BOB).encode(), uh(BOB).encode())) == []
    finally:
        await redis.aclose()
        server.terminate()
        server.wait(timeout=10)
