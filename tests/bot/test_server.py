"""Server controls (`/moodring server`): the switch stops every command and button in that
server, except forgetting, exporting and the privacy notice; sessions can be switched off alone;
a default strategy applies. Real bot, fake Discord, real Redis, a real worker."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from bot.guilds import guild_prefix
from bot.texts import SERVER_OFF, SESSIONS_OFF
from tests.bot.conftest import BotFactory, uh
from tests.bot.helpers import accept_consent, check, custom_ids, reading_text, start_session
from tests.conftest import face_photo
from tests.fakediscord import CHANNEL_ID, EPHEMERAL, GUILD_ID, FakeDiscord

pytestmark = pytest.mark.timeout(180)

ALICE, BOB, ADMIN = 4242, 5151, 7070
MANAGE_GUILD = 1 << 5


async def _answer(fake: FakeDiscord, ix: Any) -> dict[str, Any]:
    await fake.acked(ix)
    return await fake.reply(ix)


async def _server(fake: FakeDiscord, user: int, perms: int = MANAGE_GUILD, **options: Any) -> str:
    ix = await fake.slash(user, "moodring", "server", options=options, perms=perms)
    return str((await _answer(fake, ix))["content"])


async def test_only_managers_change_settings_and_they_live_under_the_guild_tag(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis
) -> None:
    await start_bot()
    assert "Manage Server" in await _server(fake, ALICE, perms=0, enabled=False)
    assert await redis.exists(f"{guild_prefix(GUILD_ID)}:settings") == 0
    text = await _server(fake, ADMIN, sessions=False, strategy="calm")
    assert "sessions: off" in text and "default music strategy: calm" in text and "server:** on" in text
    assert [k async for k in redis.scan_iter(match="moodring:guild:*")] == [
        f"moodring:guild:{{{GUILD_ID}}}:settings".encode()
    ]
    assert "per emotion" in await _server(fake, ADMIN, strategy="none")


async def test_switched_off_server_stops_every_command_and_button_but_forget(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    _, prompt = await check(fake, BOB)  # Bob's first check: a consent prompt holding his photo
    await accept_consent(fake, ALICE)
    _, reading = await check(fake, ALICE)  # a reading with its buttons, while moodring is on
    board = await start_session(fake, ALICE)
    assert "off" in await _server(fake, ADMIN, enabled=False)

    photo = fake.upload(face_photo(size=(160, 160)))
    commands: list[tuple[str, str | None, dict[str, Any]]] = [
        ("mood", "check", {}),
        ("mood", "history", {}),
        ("mood", "baseline show", {}),
        ("mood", "baseline clear", {}),
        ("session", "start", {}),
        ("session", "join", {}),
    ]
    for name, sub, options in commands:
        attachments = {"photo": photo} if sub == "check" else None
        ix = await fake.slash(ALICE, name, sub, options=options, attachments=attachments)
        msg = await _answer(fake, ix)
        assert msg["content"] == SERVER_OFF and msg["flags"] & EPHEMERAL, (name, sub)
    ix = await fake.slash(ALICE, "mood", "baseline set", attachments={"photo": photo})
    assert (await _answer(fake, ix))["content"] == SERVER_OFF
    target = fake.message(ALICE, [fake.upload(face_photo(size=(160, 160)))])
    assert (await _answer(fake, await fake.context_menu(ALICE, "Read mood", target)))["content"] == SERVER_OFF

    buttons = [c for c in custom_ids(reading) if c.startswith(("mr:share:", "mr:calm:"))]
    fix = next(c for c in custom_ids(reading) if c.startswith("mr:fix:"))
    for custom_id in [*buttons, f"mr:sess:{CHANNEL_ID}:join", f"mr:sess:{CHANNEL_ID}:skip"]:
        message = board if custom_id.startswith("mr:sess:") else reading
        assert (await _answer(fake, await fake.click(ALICE, message, custom_id)))["content"] == SERVER_OFF
    ix = await fake.click(ALICE, reading, fix, values=["sad"])
    assert (await _answer(fake, ix))["content"] == SERVER_OFF
    accept = next(c for c in custom_ids(prompt) if c.startswith(f"mr:consent:{BOB}:yes:"))
    assert (await _answer(fake, await fake.click(BOB, prompt, accept)))["content"] == SERVER_OFF
    assert [k async for k in redis.scan_iter(match=f"*{uh(BOB)}*:history")] == []  # his photo unread
    assert (await redis.hgetall(f"moodring:user:{{{uh(ALICE)}}}:corrections")) == {}  # nothing ran

    # a photo posted with a mention: one line in the channel, nothing read
    before = len(fake.channel_messages(CHANNEL_ID))
    await fake.post(ALICE, [fake.upload(face_photo(size=(160, 160)))], dm=False, mention_bot=True)
    await fake.wait_for(lambda: len(fake.channel_messages(CHANNEL_ID)) > before, 10, "the one line")
    assert fake.channel_messages(CHANNEL_ID)[-1]["content"] == SERVER_OFF

    # what a user needs to leave still works: privacy (with the AI Act line), export, forget
    privacy = await _answer(fake, await fake.slash(ALICE, "mood", "privacy"))
    assert "AI Act" in privacy["content"] and "Art. 5(1)(f)" in privacy["content"]
    export = await _answer(fake, await fake.slash(ALICE, "mood", "export"))
    assert [a["filename"] for a in export["attachments"]]
    confirm = await _answer(fake, await fake.slash(ALICE, "mood", "forget"))
    click = await fake.click(ALICE, confirm, f"mr:forget:{ALICE}:yes")
    await fake.acked(click)
    await fake.wait_for(lambda: "deleted" in fake.messages[int(confirm["id"])]["content"], 10, "forget")
    assert [k async for k in redis.scan_iter(match=f"*{uh(ALICE)}*")] == []

    # back on: commands run again
    await _server(fake, ADMIN, enabled=True)
    ix = await fake.slash(ALICE, "mood", "baseline show")
    assert (await _answer(fake, ix))["content"] != SERVER_OFF


async def test_sessions_off_alone_and_the_default_strategy(
    fake: FakeDiscord, start_bot: BotFactory, worker: None
) -> None:
    await start_bot()
    await _server(fake, ADMIN, sessions=False, strategy="calm")
    ix = await fake.slash(ALICE, "session", "start", options={"strategy": "lift", "length": 5})
    assert (await _answer(fake, ix))["content"] == SESSIONS_OFF
    await accept_consent(fake, ALICE)
    _, reading = await check(fake, ALICE)  # checks still work, with the server's strategy
    assert "Music (calm)" in reading_text(reading)
