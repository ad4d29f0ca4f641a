"""Selfie channels (`/moodring watch`): photos posted in a watched channel get a reading as a
reply for members who consented, one consent prompt (and nothing read) for the others; the
privileged intent stays off unless asked for, and its absence is said at start-up."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.texts import MESSAGE_CONTENT_MISSING, WATCH_NEEDS_OPERATOR
from tests.bot.conftest import BotFactory, bot_process_env, uh
from tests.bot.helpers import accept_consent, custom_ids, reading_text
from tests.conftest import face_photo
from tests.fakediscord import CHANNEL_ID, EPHEMERAL, FakeDiscord

pytestmark = pytest.mark.timeout(180)

ALICE, BOB, ADMIN = 4242, 5151, 7070
MANAGE_GUILD = 1 << 5
ROOT = Path(__file__).resolve().parents[2]


async def _watch(fake: FakeDiscord, on: bool = True) -> str:
    ix = await fake.slash(
        ADMIN,
        "moodring",
        "watch",
        options={"channel": {"channel_id": CHANNEL_ID}, "on": on},
        perms=MANAGE_GUILD,
    )
    await fake.acked(ix)
    return str((await fake.reply(ix))["content"])


async def _replies_to(fake: FakeDiscord, posted: dict[str, object], within: float = 30) -> dict[str, object]:
    def found() -> dict[str, object] | None:
        for m in fake.channel_messages(CHANNEL_ID):
            if str((m.get("message_reference") or {}).get("message_id")) == posted["id"]:
                return m
        return None

    return await fake.wait_for(found, within, "a reply to the photo")  # type: ignore[no-any-return]


async def test_watch_needs_the_operator_switch(fake: FakeDiscord, start_bot: BotFactory) -> None:
    fake.guild_create = True
    await start_bot()  # MOODRING_WATCH_CHANNELS unset: no privileged intent asked for
    assert await _watch(fake) == WATCH_NEEDS_OPERATOR


async def test_a_watched_channel_reads_consenting_members_and_asks_the_others(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    fake.message_content = True  # the portal switch is on
    fake.guild_create = True
    await start_bot(watch_channels=True)
    await accept_consent(fake, ALICE)
    photo = face_photo(size=(160, 160))

    before = len(fake.channel_messages(CHANNEL_ID))
    await fake.post(ALICE, [fake.upload(photo)], dm=False)  # not watched yet: nothing
    await asyncio.sleep(1.0)
    assert len(fake.channel_messages(CHANNEL_ID)) == before

    assert "Watching" in await _watch(fake)
    posted = await fake.post(ALICE, [fake.upload(photo)], dm=False)
    reading = await _replies_to(fake, posted)
    assert "You look" in reading_text(reading)  # type: ignore[arg-type]
    assert [a["filename"] for a in reading["attachments"]] == ["heatmap.jpg"]  # type: ignore[union-attr]
    ids = custom_ids(reading)  # type: ignore[arg-type]
    assert not any(c.startswith("mr:share:") for c in ids)  # already public
    assert any(c.startswith(f"mr:fix:{ALICE}:") for c in ids)
    assert len(await bot_history(redis, ALICE)) == 1

    # Bob hasn't agreed: one short prompt, nothing analysed or stored about him
    posted = await fake.post(BOB, [fake.upload(photo)], dm=False)
    prompt = await _replies_to(fake, posted)
    assert "selfie channel" in prompt["content"] and "Nothing is read until you accept" in prompt["content"]  # type: ignore[operator]
    assert "embeds" not in prompt or not prompt["embeds"]
    assert await bot_history(redis, BOB) == []
    accept = next(c for c in custom_ids(prompt) if c.startswith(f"mr:consent:{BOB}:yes"))  # type: ignore[arg-type]
    assert (await fake.acked(await fake.click(ALICE, prompt, accept)))["data"]["flags"] & EPHEMERAL  # not his
    click = await fake.click(BOB, prompt, accept)
    await fake.acked(click)
    private = await fake.reply(click, 1)  # Accept reads the photo he posted, only for him
    assert "You look" in reading_text(private) and private["flags"] & EPHEMERAL
    assert len(await bot_history(redis, BOB)) == 1

    # the server switches selfie channels off: silence
    admin = await fake.slash(
        ADMIN, "moodring", "server", options={"selfie_channels": False}, perms=MANAGE_GUILD
    )
    await fake.acked(admin)
    count = len(fake.channel_messages(CHANNEL_ID))
    await fake.post(ALICE, [fake.upload(photo)], dm=False)
    await asyncio.sleep(1.5)
    assert len(fake.channel_messages(CHANNEL_ID)) == count
    assert len(await bot_history(redis, ALICE)) == 1


async def bot_history(redis: Redis, user_id: int) -> list[object]:
    return list(await redis.xrange(f"moodring:user:{{{uh(user_id)}}}:history"))


async def test_missing_portal_switch_is_said_at_start_up(
    fake: FakeDiscord, redis_server: str, tmp_path: Path
) -> None:
    env = bot_process_env(fake, redis_server, MOODRING_WATCH_CHANNELS="true")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        rc = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert rc == 2, err
    assert MESSAGE_CONTENT_MISSING in err and "Traceback" not in err
