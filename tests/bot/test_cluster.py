"""The real bot and a real worker on a real Redis Cluster (three masters): two bot processes,
consent, a check with its heatmap, a correction, history, a listening session and /mood forget.

Every multi-key step must stay within one hash slot, or the cluster refuses it (CROSSSLOT).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.bot.conftest import BotFactory, bot_factory, uh
from tests.bot.helpers import accept_consent, check, custom_ids, reading_text, start_session
from tests.conftest import Cluster, wait_for_worker
from tests.fakediscord import CHANNEL_ID, FakeDiscord

pytestmark = pytest.mark.timeout(240)

ALICE, BOB = 4242, 5151
ON_CLUSTER = {"redis_cluster": True, "queue_shards": 3}


@pytest.fixture
async def cluster_worker(redis_cluster: Cluster, cluster: Redis, tiny_model_dir: Path) -> AsyncIterator[None]:
    from inference.serve.checkpoint import load_model
    from inference.serve.detectors.full import FullFrameDetector
    from inference.serve.predictor import Predictor
    from inference.worker.service import Worker
    from inference.worker.settings import WorkerSettings

    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    settings = WorkerSettings(redis_url=redis_cluster.url, block_ms=50, job_timeout_s=60, **ON_CLUSTER)
    w = Worker(redis_cluster.client(), predictor, settings, name="w-cluster-tests")
    task = asyncio.create_task(w.run())
    await wait_for_worker(cluster)
    yield
    w.stop()
    await task
    await w.redis.aclose()
    predictor.close()


@pytest.fixture
async def cluster_bot(fake: FakeDiscord, redis_cluster: Cluster, cluster: Redis) -> AsyncIterator[BotFactory]:
    async with bot_factory(fake, redis_cluster.url, **ON_CLUSTER) as factory:
        yield factory


async def _keys(redis: Redis, pattern: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=pattern)]  # every master


async def test_bot_flows_sessions_and_forget_on_a_cluster(
    fake: FakeDiscord, cluster_bot: BotFactory, cluster_worker: None, cluster: Redis
) -> None:
    bot = await cluster_bot()
    await cluster_bot()  # a second bot process: interactions alternate between them (shards)
    await accept_consent(fake, ALICE)
    ix, msg = await check(fake, ALICE)
    assert "You look" in reading_text(msg)
    assert [a["filename"] for a in msg["attachments"]] == ["heatmap.jpg"]

    fix_id = next(c for c in custom_ids(msg) if c.startswith("mr:fix:"))  # a correction: WATCHed write
    fix = await fake.click(ALICE, msg, fix_id, values=["surprise"])
    await fake.acked(fix)
    assert "surprise" in (await fake.reply(fix))["embeds"][0]["title"]
    assert await bot.services.store.prior(ALICE)  # the correction became a prior
    ix = await fake.slash(ALICE, "mood", "history", options={"days": 30})
    await fake.acked(ix)
    assert "1 reading" in str((await fake.reply(ix))["embeds"][0]["fields"])
    calm = next(c for c in custom_ids(msg) if c.startswith("mr:calm:"))  # the calm face, WATCHed too
    click = await fake.click(ALICE, msg, calm)
    await fake.acked(click)
    assert "Saved your calm face" in (await fake.reply(click))["content"]
    ix = await fake.slash(ALICE, "mood", "export")
    await fake.acked(ix)
    exported = json.loads(fake.cdn[int((await fake.reply(ix))["attachments"][0]["id"])])
    assert exported["consent"] and len(exported["history"]) == 1 and exported["calm_face_baseline"]

    # a listening session: its keys on one slot, each member's index on theirs
    board = await start_session(fake, ALICE)
    join = await fake.click(BOB, board, f"mr:sess:{CHANNEL_ID}:join")
    await fake.acked(join)
    assert "You joined" in (await fake.reply(join))["content"]
    await accept_consent(fake, BOB)
    ix, _ = await check(fake, BOB)
    assert "counts in this channel" in (await fake.reply(ix, 2))["content"]
    view = await bot.services.sessions.view(CHANNEL_ID)
    assert view.members == (ALICE, BOB) and len(view.queue) == 5
    assert await _keys(cluster, f"moodring:user:{{{uh(BOB)}}}:sessions")

    # forget: Alice leaves the session (Bob becomes host), all her keys go, on whichever master
    ix = await fake.slash(ALICE, "mood", "forget")
    await fake.acked(ix)
    msg = await fake.reply(ix)
    click = await fake.click(ALICE, msg, f"mr:forget:{ALICE}:yes")
    await fake.acked(click)
    await fake.wait_for(lambda: "deleted" in fake.messages[int(msg["id"])]["content"], 10, "forget")
    assert await _keys(cluster, f"*{uh(ALICE)}*") == []
    view = await bot.services.sessions.view(CHANNEL_ID)
    assert view.members == (BOB,) and view.host_id == BOB

    # the last one out ends it: nothing of the session is left on any node
    leave = await fake.click(BOB, board, f"mr:sess:{CHANNEL_ID}:leave")
    await fake.acked(leave)
    await fake.reply(leave)
    await bot.board.coalescer.drain()
    assert await _keys(cluster, "moodring:session:*") == []
    assert await _keys(cluster, "moodring:user:*:sessions") == []
    assert await _keys(cluster, "moodring:job:*:img") == []
