"""The real discord.py client against the in-repo fake Discord, real Redis and a real worker."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import discord
import pytest
from discord import app_commands
from redis.asyncio import Redis

from tests.bot.conftest import BotFactory, bot_process_env, uh
from tests.bot.helpers import IS_COMPONENTS_V2, accept_consent, check, custom_ids, links, reading_text, walk
from tests.conftest import face_photo
from tests.fakediscord import CHANNEL_ID, EPHEMERAL, FakeDiscord

pytestmark = pytest.mark.timeout(180)

ALICE, BOB = 4242, 5151
ROOT = Path(__file__).resolve().parents[2]


async def _user_keys(redis: Redis, user_id: int) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"*{uh(user_id)}*")]


async def test_check_defers_then_answers_with_embed_heatmap_and_buttons(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    # First use: consent is asked, nothing is analysed or stored.
    ix, msg = await check(fake, ALICE)
    assert (await fake.acked(ix))["type"] == 5 and ix.callback_after_s is not None and ix.callback_after_s < 3
    assert "AI model" in msg["content"] and msg["flags"] & EPHEMERAL
    # Nothing of hers is stored; only the photo's link is held (for Accept, at most 10 minutes,
    # in the Redis that never persists) under keys of its own.
    held = await _user_keys(redis, ALICE)
    assert [k.split(b":")[1] for k in held] == [b"pending-of"] and 0 < await redis.ttl(held[0]) <= 600
    await accept_consent(fake, ALICE)  # consent given another way: the held link is dropped
    assert await _user_keys(redis, ALICE) == [] or all(
        b"pending" not in k for k in await _user_keys(redis, ALICE)
    )

    photo = face_photo(size=(160, 160))
    ix, msg = await check(fake, ALICE, photo)
    callback = await fake.acked(ix)
    assert callback["type"] == 5 and callback["data"]["flags"] & EPHEMERAL  # deferred, ephemeral
    assert msg["flags"] & EPHEMERAL
    assert msg["flags"] & IS_COMPONENTS_V2 and not msg["embeds"] and not msg["content"]
    gallery = next(c for c in walk(msg["components"]) if c["type"] == 12)  # the heatmap
    assert gallery["items"][0]["media"]["url"] == "attachment://heatmap.jpg"
    assert [a["filename"] for a in msg["attachments"]] == ["heatmap.jpg"]
    assert fake.cdn[int(msg["attachments"][0]["id"])].startswith(b"\xff\xd8\xff")
    text = reading_text(msg)
    assert "You look" in text and "%" in text
    assert "of the evidence)" in text  # the Grad-CAM reason line
    urls = links(msg)
    assert len(urls) == 5 and all(u.startswith("https://open.spotify.com/") for u in urls)
    ids = custom_ids(msg)
    assert f"mr:share:{ALICE}" in ids and any(c.startswith(f"mr:fix:{ALICE}:") for c in ids)

    # No image bytes, heatmap or attachment URL stays in Redis after the check.
    for key in [k async for k in redis.scan_iter(match="*")]:
        kind = (await redis.type(key)).decode()
        blob = repr(await redis.xrange(key)) if kind == "stream" else repr(await redis.dump(key))
        raw = await redis.dump(key) or b""
        assert f"127.0.0.1:{fake.port}" not in blob and "/cdn/" not in blob
        assert photo[100:140] not in raw and b"\xff\xd8\xff" not in raw and b"/9j/" not in raw
    assert [k async for k in redis.scan_iter(match="moodring:job:*:img")] == []


async def test_context_menu_share_and_correction(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    await accept_consent(fake, ALICE)
    target = fake.message(ALICE, [fake.upload(face_photo(size=(160, 160)))])
    ix = await fake.context_menu(ALICE, "Read mood", target)
    assert (await fake.acked(ix))["type"] == 5
    msg = await fake.reply(ix)
    assert msg["flags"] & EPHEMERAL and "You look" in reading_text(msg)

    # Someone else can't press Alice's buttons.
    nosy = await fake.click(BOB, msg, f"mr:share:{ALICE}")
    refused = await fake.acked(nosy)
    assert refused["type"] == 4 and "Only the person" in refused["data"]["content"]

    share = await fake.click(ALICE, msg, f"mr:share:{ALICE}")
    await fake.acked(share)
    public = await fake.reply(share)
    assert not public["flags"] & EPHEMERAL
    assert reading_text(msg) in reading_text(public) and "shared their mood reading" in reading_text(public)
    assert [a["filename"] for a in public["attachments"]] == ["heatmap.jpg"]
    assert not [c for c in walk(public["components"]) if "custom_id" in c]  # no buttons of hers

    fix_id = next(c for c in custom_ids(msg) if c.startswith("mr:fix:"))
    fix = await fake.click(ALICE, msg, fix_id, values=["surprise"])
    await fake.acked(fix)
    answer = await fake.reply(fix)
    assert answer["flags"] & EPHEMERAL and "surprise" in answer["embeds"][0]["title"]
    assert len(links(answer)) == 5
    history = await bot.services.store.history(ALICE)
    assert history[0].corrected == "surprise"
    # The correction feeds the user's prior: the next reading leans toward "surprise".
    weights = await bot.services.store.prior(ALICE)
    assert max(weights, key=weights.__getitem__) == "surprise"


async def test_history_chart_export_and_forget(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    for _ in range(2):
        await check(fake, ALICE)

    ix = await fake.slash(ALICE, "mood", "history", options={"days": 30})
    await fake.acked(ix)
    msg = await fake.reply(ix)
    assert msg["flags"] & EPHEMERAL
    assert [a["filename"] for a in msg["attachments"]] == ["moods.png"]
    assert fake.cdn[int(msg["attachments"][0]["id"])].startswith(b"\x89PNG")
    fields = {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}
    assert "2 readings" in fields["This week"] and fields["Most frequent"]

    ix = await fake.slash(ALICE, "mood", "export")
    await fake.acked(ix)
    msg = await fake.reply(ix)
    exported = json.loads(fake.cdn[int(msg["attachments"][0]["id"])])
    assert exported["consent"] is True and len(exported["history"]) == 2
    assert len(exported["recent_recommendations"]) == 10

    ix = await fake.slash(ALICE, "mood", "forget")
    await fake.acked(ix)
    msg = await fake.reply(ix)
    assert await _user_keys(redis, ALICE) != []
    click = await fake.click(ALICE, msg, f"mr:forget:{ALICE}:yes")
    assert (await fake.acked(click))["type"] == 6  # acknowledged first, then deleted
    await fake.wait_for(lambda: "deleted" in fake.messages[int(msg["id"])]["content"], 10, "forget")
    assert await _user_keys(redis, ALICE) == []


async def test_declining_consent_stores_nothing_and_nothing_is_analysed(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    await start_bot()
    _, msg = await check(fake, BOB)
    decline = next(c for c in custom_ids(msg) if ":no" in c)
    click = await fake.click(BOB, msg, decline)
    assert (await fake.acked(click))["type"] == 6
    await fake.wait_for(lambda: "stores nothing" in fake.messages[int(msg["id"])]["content"], 10, "decline")
    assert await _user_keys(redis, BOB) == []
    _, msg = await check(fake, BOB)  # no worker in this test: it would time out if a job were sent
    assert "AI model" in msg["content"]
    assert await redis.exists("moodring:jobs") == 0


async def test_bad_attachments_are_refused_before_download(fake: FakeDiscord, start_bot: BotFactory) -> None:
    await start_bot(max_photo_bytes=2048)
    att = fake.upload(b"%PDF-1.4 not an image", filename="doc.pdf", content_type="application/pdf")
    ix = await fake.slash(ALICE, "mood", "check", attachments={"photo": att})
    reply = await fake.acked(ix)
    assert reply["type"] == 4 and "isn't an image" in reply["data"]["content"]
    big = fake.upload(b"\xff\xd8\xff" + b"0" * 4096)
    ix = await fake.slash(ALICE, "mood", "check", attachments={"photo": big})
    assert "too large" in (await fake.acked(ix))["data"]["content"]
    assert not [c for c in fake.calls if "/cdn/" in c.path]


async def test_rate_limited_follow_up_is_retried(
    fake: FakeDiscord, start_bot: BotFactory, worker: None
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    fake.rate_limit("POST", r"^/webhooks/", retry_after=0.4)
    ix, msg = await check(fake, ALICE)
    assert (await fake.acked(ix))["type"] == 5 and "You look" in reading_text(msg)
    statuses = [c.status for c in fake.calls_to("POST", r"^/webhooks/")]
    assert statuses[:2] == [429, 200]


async def test_a_handler_that_misses_the_3_second_deadline_is_caught(
    fake: FakeDiscord, start_bot: BotFactory
) -> None:
    bot = await start_bot()

    @app_commands.command(name="slow", description="answers too late")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(3.3)
        await interaction.response.send_message("late")

    bot.tree.add_command(slow)
    ix = await fake.slash(ALICE, "slow")
    await fake.wait_for(lambda: ix.missed_deadline, 10, "the late callback")
    with pytest.raises(AssertionError, match="3-second"):
        await fake.acked(ix)


async def test_commands_sync_to_the_dev_guild_only(fake: FakeDiscord, start_bot: BotFactory) -> None:
    await start_bot(dev_guild_id=1234)
    puts = fake.calls_to("PUT", r"^/applications/\d+/")
    assert [c.path.split("/")[3:] for c in puts] == [["guilds", "1234", "commands"]]
    names = {c["name"] for c in puts[0].json}
    assert names == {"mood", "session", "moodring", "Read mood"}
    mood = next(c for c in puts[0].json if c["name"] == "mood")
    assert {o["name"] for o in mood["options"]} == {
        "check",
        "history",
        "export",
        "forget",
        "privacy",
        "baseline",
        "music",
    }
    baseline = next(o for o in mood["options"] if o["name"] == "baseline")
    assert baseline["type"] == 2 and {o["name"] for o in baseline["options"]} == {"set", "show", "clear"}


async def test_buttons_work_after_a_restart(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    old = await start_bot()
    await accept_consent(fake, ALICE)
    _, msg = await check(fake, ALICE)
    await old.close()
    await start_bot()  # a new process: nothing in memory, the custom_id and Redis carry the state
    fix_id = next(c for c in custom_ids(msg) if c.startswith("mr:fix:"))
    fix = await fake.click(ALICE, msg, fix_id, values=["happy"])
    await fake.acked(fix)
    assert "happy" in (await fake.reply(fix))["embeds"][0]["title"]


async def test_python_m_bot_runs_against_discord_and_exits_cleanly_on_sigterm(
    fake: FakeDiscord, redis_server: str, tmp_path: Path
) -> None:
    env = bot_process_env(fake, redis_server, MOODRING_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await fake.wait_ready(1, within=60)
        ix = await fake.slash(ALICE, "mood", "privacy")
        assert "AI model" in (await fake.acked(ix))["data"]["content"]
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert "Traceback" not in err, err


async def test_photo_by_dm_or_mention_is_answered_by_dm(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    dm = fake.dm_channel(BOB)
    await fake.post(BOB, [fake.upload(face_photo(size=(160, 160)))], dm=True)
    first = await fake.wait_for(lambda: fake.channel_messages(dm), 30, "a DM answer")
    assert "AI model" in first[0]["content"]  # consent first, nothing analysed
    await accept_consent(fake, BOB)
    await fake.post(BOB, [fake.upload(face_photo(size=(160, 160)))], dm=False, mention_bot=True)
    answers = await fake.wait_for(
        lambda: [m for m in fake.channel_messages(dm) if reading_text(m)], 60, "result"
    )
    assert [a["filename"] for a in answers[0]["attachments"]] == ["heatmap.jpg"]
    assert not any(c.startswith("mr:share:") for c in custom_ids(answers[0]))
    in_channel = [m for m in fake.channel_messages(CHANNEL_ID) if reading_text(m) or m["attachments"]]
    assert in_channel == []  # nothing about the face in the channel
    # A guild message that doesn't mention the bot is ignored.
    await fake.post(BOB, [fake.upload(face_photo(size=(160, 160)))], dm=False)
    await asyncio.sleep(1.0)
    assert len([m for m in fake.channel_messages(dm) if reading_text(m)]) == 1


async def test_calm_face_command_button_and_stale_button_after_forget(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    photo = fake.upload(face_photo(size=(160, 160)))
    ix = await fake.slash(ALICE, "mood", "baseline set", attachments={"photo": photo})
    await fake.acked(ix)
    assert "AI model" in (await fake.reply(ix))["content"]  # consent first: nothing read or kept
    assert await _user_keys(redis, ALICE) == []
    await accept_consent(fake, ALICE)

    ix = await fake.slash(ALICE, "mood", "baseline set", attachments={"photo": photo})
    await fake.acked(ix)
    saved = await fake.reply(ix)
    assert saved["flags"] & EPHEMERAL and "Saved your calm face (1 of up to 5" in saved["content"]
    calm = await bot.services.store.baseline(ALICE)
    assert calm is not None and set(calm) == {"probs", "photos", "at"}

    _, reading = await check(fake, ALICE)
    assert "relative to your calm face" in reading_text(reading)
    latest = (await bot.services.store.history(ALICE))[0]
    assert latest.baseline and latest.raw is not None
    show = await fake.slash(ALICE, "mood", "baseline show")
    assert "1 photo(s) averaged" in (await fake.acked(show))["data"]["content"]

    button = next(c for c in custom_ids(reading) if c.startswith(f"mr:calm:{ALICE}:"))
    press = await fake.click(ALICE, reading, button)
    await fake.acked(press)
    assert "2 of up to 5" in (await fake.reply(press))["content"]

    history = await fake.slash(ALICE, "mood", "history")
    await fake.acked(history)
    assert "calm-relative" in json.dumps((await fake.reply(history))["embeds"])

    forget = await fake.slash(ALICE, "mood", "forget")
    await fake.acked(forget)
    confirm = await fake.reply(forget)
    done = await fake.click(ALICE, confirm, f"mr:forget:{ALICE}:yes")
    await fake.acked(done)
    assert await _user_keys(redis, ALICE) == []
    stale = await fake.click(ALICE, reading, button)  # an old button after forget stores nothing
    await fake.acked(stale)
    assert "forget you" in (await fake.reply(stale))["content"]
    assert await _user_keys(redis, ALICE) == []

    clear = await fake.slash(ALICE, "mood", "baseline clear")
    assert "haven't shown me a calm face" in (await fake.acked(clear))["data"]["content"]
