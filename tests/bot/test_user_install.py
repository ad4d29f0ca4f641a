"""moodring installed to a user's own account: `/mood …` and "Read mood" in DMs, group DMs and
servers without the bot; what needs the bot in the server says so. Real bot, fake Discord."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.texts import NEEDS_SERVER_INSTALL
from tests.bot.conftest import BotFactory
from tests.bot.helpers import accept_consent, custom_ids, reading_text
from tests.conftest import face_photo
from tests.fakediscord import EPHEMERAL, FakeDiscord

pytestmark = pytest.mark.timeout(180)

ALICE = 4242


async def test_install_types_and_contexts_are_declared(fake: FakeDiscord, start_bot: BotFactory) -> None:
    await start_bot(dev_guild_id=1234)
    synced = {c["name"]: c for c in fake.calls_to("PUT", r"^/applications/\d+/")[0].json}
    for name in ("mood", "Read mood"):  # guild install (0) and user install (1); guild, DM, group DM
        assert sorted(synced[name]["integration_types"]) == [0, 1], name
        assert sorted(synced[name]["contexts"]) == [0, 1, 2], name
    for name in ("session", "moodring"):  # need the bot in the server
        assert synced[name]["integration_types"] == [0], name
        assert synced[name]["contexts"] == [0], name


@pytest.mark.parametrize("where", ["dm", "group-dm", "user-guild"])
async def test_check_and_read_mood_work_where_only_the_user_installed_it(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis, where: str
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    att = fake.upload(face_photo(size=(160, 160)))
    ix = await fake.slash(ALICE, "mood", "check", attachments={"photo": att}, where=where)
    await fake.acked(ix)
    msg = await fake.reply(ix)
    assert "You look" in reading_text(msg) and msg["flags"] & EPHEMERAL
    assert [a["filename"] for a in msg["attachments"]] == ["heatmap.jpg"]
    ids = custom_ids(msg)
    assert any(c.startswith("mr:fix:") for c in ids)
    assert not any(c.startswith("mr:share:") for c in ids)  # no server to share to
    assert len(ix.messages) <= 5  # Discord's follow-up cap for user installs

    target = fake.message(ALICE, [fake.upload(face_photo(size=(160, 160)))])
    ix = await fake.context_menu(ALICE, "Read mood", target, where=where)
    await fake.acked(ix)
    assert "You look" in reading_text(await fake.reply(ix))


async def test_sharing_says_it_needs_the_server_install(
    fake: FakeDiscord, start_bot: BotFactory, worker: None
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    att = fake.upload(face_photo(size=(160, 160)))
    ix = await fake.slash(ALICE, "mood", "check", attachments={"photo": att})  # server install
    await fake.acked(ix)
    reading = await fake.reply(ix)
    share = next(c for c in custom_ids(reading) if c.startswith("mr:share:"))
    click = await fake.click(ALICE, reading, share, where="user-guild")
    await fake.acked(click)
    answer = await fake.reply(click)
    assert answer["content"] == NEEDS_SERVER_INSTALL and answer["flags"] & EPHEMERAL
