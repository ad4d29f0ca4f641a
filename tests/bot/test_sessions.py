"""Group listening sessions through the real bot, fake Discord, real Redis and a real worker."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.app import MoodringBot
from tests.bot.conftest import BotFactory, uh
from tests.bot.helpers import accept_consent, check, custom_ids, start_session
from tests.fakediscord import CHANNEL_ID, FakeDiscord

pytestmark = pytest.mark.timeout(180)

HOST, BOB, CAROL, DAVE, EVE = 100, 200, 300, 400, 500
MANAGE_CHANNELS = 1 << 4


async def _start(fake: FakeDiscord, length: int = 5, shard: int = 0) -> dict[str, Any]:
    board = await start_session(fake, HOST, length, shard)
    posts = fake.calls_to("POST", rf"^/channels/{CHANNEL_ID}/messages$")
    assert posts, "the session message is a channel message the bot can keep editing"
    return board


async def _press(fake: FakeDiscord, user: int, board: dict[str, Any], action: str, **kw: Any) -> str:
    ix = await fake.click(user, board, f"mr:sess:{CHANNEL_ID}:{action}", **kw)
    await fake.acked(ix)
    return str((await fake.reply(ix))["content"])


async def _settled(bot: MoodringBot) -> None:
    await bot.board.coalescer.drain()


async def _session_keys(redis: Redis) -> list[bytes]:
    return [k async for k in redis.scan_iter(match="moodring:session:*")]


async def test_start_join_check_in_vote_skip_and_end(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    board = await _start(fake)
    assert {c.split(":")[-1] for c in custom_ids(board)} == {"listen", "join", "leave", "skip", "end"}
    for user in (BOB, CAROL, DAVE):
        assert "You joined" in await _press(fake, user, board, "join")
    assert "already" in await _press(fake, BOB, board, "join")

    for user in (BOB, CAROL, DAVE):
        await accept_consent(fake, user)
        ix, _ = await check(fake, user)
        assert "counts in this channel" in (await fake.reply(ix, 2))["content"]
    await _settled(bot)
    view = await bot.services.sessions.view(CHANNEL_ID)
    assert view.mood_line.startswith("4 people:") and "→ lifting gently" in view.mood_line
    assert len(view.queue) == 5
    embed = fake.messages[int(board["id"])]["embeds"][0]
    assert embed["description"] == view.mood_line
    playing = next(f["value"] for f in embed["fields"] if f["name"] == "Now playing")
    assert view.queue[0].title in playing and "http" not in playing  # links: each member's Listen

    # A non-member can't vote; members need a majority (3 of 4).
    assert "Only members" in await _press(fake, EVE, board, "skip")
    first = view.queue[0]
    assert "1/3" in await _press(fake, BOB, board, "skip")
    assert "2/3" in await _press(fake, CAROL, board, "skip")
    assert (await bot.services.sessions.view(CHANNEL_ID)).queue[0] == first
    assert "Skipped" in await _press(fake, DAVE, board, "skip")
    assert (await bot.services.sessions.view(CHANNEL_ID)).queue[0] != first
    # The host skips at once.
    second = (await bot.services.sessions.view(CHANNEL_ID)).queue[0]
    assert "Skipped" in await _press(fake, HOST, board, "skip")
    assert (await bot.services.sessions.view(CHANNEL_ID)).queue[0] != second

    assert "Only the host" in await _press(fake, BOB, board, "end")
    assert "ended" in await _press(fake, HOST, board, "end")
    await _settled(bot)
    assert fake.messages[int(board["id"])]["content"] == "This listening session has ended."
    assert await _session_keys(redis) == []
    assert [k async for k in redis.scan_iter(match="moodring:user:*:sessions")] == []
    # nothing of the ended session survives it (its track history included); the board's edit
    # lock is a second-long marker that expires by itself
    left = [k async for k in redis.scan_iter(match=f"*{CHANNEL_ID}*")]
    assert [k for k in left if not k.startswith(b"moodring:board:")] == []
    assert all([0 < await redis.pttl(k) <= 11_000 for k in left])


async def test_manage_channels_can_end_someone_elses_session(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    await start_bot()
    board = await _start(fake)
    assert "ended" in await _press(fake, EVE, board, "end", perms=MANAGE_CHANNELS)
    assert await _session_keys(redis) == []


async def test_two_bot_processes_share_one_session(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    first = await start_bot()
    second = await start_bot()
    board = await _start(fake, shard=0)
    assert "You joined" in await _press(fake, BOB, board, "join", shard=1)  # handled by the other process
    assert "You joined" in await _press(fake, CAROL, board, "join", shard=0)
    assert (await first.services.sessions.view(CHANNEL_ID)).members == (HOST, BOB, CAROL)
    assert (await second.services.sessions.view(CHANNEL_ID)).members == (HOST, BOB, CAROL)
    ix = await fake.slash(BOB, "session", "status", shard=1)
    assert "3 people" in (await fake.acked(ix))["data"]["embeds"][0]["description"]
    await _settled(first)
    await _settled(second)
    assert "Members (3)" in str(fake.messages[int(board["id"])]["embeds"][0]["fields"])


async def test_idle_session_expires_by_itself(fake: FakeDiscord, start_bot: BotFactory, redis: Redis) -> None:
    await start_bot(session_idle_s=1)
    board = await _start(fake)
    await _press(fake, BOB, board, "join")
    assert await _session_keys(redis)
    await asyncio.sleep(1.6)
    assert await _session_keys(redis) == []
    assert "no listening session" in await _press(fake, CAROL, board, "join")
    # Bob's index still names the expired session: forgetting him must still work and be complete.
    ix = await fake.slash(BOB, "mood", "forget")
    await fake.acked(ix)
    prompt = await fake.reply(ix)
    confirm = await fake.click(BOB, prompt, f"mr:forget:{BOB}:yes")
    await fake.acked(confirm)
    await fake.wait_for(lambda: "deleted" in fake.messages[int(prompt["id"])]["content"], 10, "forget")
    assert [k async for k in redis.scan_iter(match=f"*{uh(BOB)}*")] == []


async def test_forget_removes_the_member_from_sessions(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    bot = await start_bot()
    board = await _start(fake)
    await _press(fake, BOB, board, "join")
    ix = await fake.slash(BOB, "mood", "forget")
    await fake.acked(ix)
    prompt = await fake.reply(ix)
    confirm = await fake.click(BOB, prompt, f"mr:forget:{BOB}:yes")
    await fake.acked(confirm)
    await fake.wait_for(lambda: "deleted" in fake.messages[int(prompt["id"])]["content"], 10, "forget")
    assert (await bot.services.sessions.view(CHANNEL_ID)).members == (HOST,)
    await _settled(bot)
    assert "Members (1)" in str(fake.messages[int(board["id"])]["embeds"][0]["fields"])


async def test_board_edits_are_coalesced_to_one_per_second(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    bot = await start_bot()
    board = await _start(fake)
    starts: list[float] = []  # when the bot starts each edit (arrival at the fake adds loop jitter)
    request = bot.board.coalescer.request

    async def timed(key: str, edit: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            starts.append(time.monotonic())
            await edit()

        await request(key, run)

    bot.board.coalescer.request = timed  # type: ignore[method-assign]
    started = time.monotonic()
    clicks = [fake.click(1000 + i, board, f"mr:sess:{CHANNEL_ID}:join") for i in range(20)]
    for ix in await asyncio.gather(*clicks):
        await fake.acked(ix)
        await fake.reply(ix)
    await _settled(bot)
    edits = fake.edits[int(board["id"])]
    # 20 joins, but at most one edit per second of the burst (plus the first), however slow the machine
    assert 1 <= len(edits) <= min(19, time.monotonic() - started + 1), edits
    assert len(starts) == len(edits)
    # edits start >= 1.05 s apart (the Redis lock's interval + 50 ms); measured where the bot starts
    # them: their arrival at the fake, on the same busy event loop, jittered by up to 0.35 s when
    # the whole suite ran on a 2-core machine
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g >= 1.0 for g in gaps), gaps
    assert "Members (21)" in str(fake.messages[int(board["id"])]["embeds"][0]["fields"])


async def test_reuse_latest_mood_and_the_last_one_out_ends_it(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    await accept_consent(fake, BOB)
    await check(fake, BOB)  # a reading from before the session
    board = await _start(fake)
    ix = await fake.slash(BOB, "session", "join", options={"reuse_latest": True})
    await fake.acked(ix)
    assert "with your latest mood" in (await fake.reply(ix))["content"]
    view = await bot.services.sessions.view(CHANNEL_ID)
    assert view.mood_line.startswith("2 people:") and "nobody" not in view.mood_line and view.queue
    assert "You left" in await _press(fake, BOB, board, "leave")
    assert "You left" in await _press(fake, HOST, board, "leave")
    assert await _session_keys(redis) == []


async def test_the_session_line_counts_people_not_faces(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    bot = await start_bot()
    await _start(fake)
    sessions = bot.services.sessions
    classes = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

    def face(top: str) -> dict[str, float]:
        return {c: (0.7 if c == top else 0.05) for c in classes}

    # the host sends a group photo: their own face (largest, first) is happy, two friends are sad
    view = await sessions.check_in(CHANNEL_ID, HOST, [face("happy"), face("sad"), face("sad")])
    assert view.mood_line.startswith("1 person: mostly happy"), view.mood_line
    assert "sad" not in view.mood_line
