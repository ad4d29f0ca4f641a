"""Labels from users for the community adapter, driven through the real bot on the fake Discord
(real Redis, a real worker with the tiny model): "Spot on", corrections and the random "Did I get
it right?" record labelled readings only with their own consent; forget and withdrawing remove
them; stale buttons after forget store nothing and do nothing. Plus the edges found when the bot
was driven as a new user would (each failed on the main before this)."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest
from redis.asyncio import Redis

from inference.api.community import PEOPLE, read_contributions
from tests.bot.conftest import BotFactory, uh
from tests.bot.helpers import accept_consent, check, custom_ids, reading_text
from tests.bot.test_privacy import _anything_about, _forget
from tests.fakediscord import FakeDiscord

pytestmark = pytest.mark.timeout(180)

ALICE = 4242


def _entry(reading: dict[str, Any], prefix: str) -> str:
    return next(c for c in custom_ids(reading) if c.startswith(prefix))


async def _click_text(fake: FakeDiscord, user: int, msg: dict[str, Any], custom_id: str, **kw: Any) -> str:
    ix = await fake.click(user, msg, custom_id, **kw)
    await fake.acked(ix)
    return str((await fake.reply(ix))["content"])


async def _contribute(fake: FakeDiscord, user: int, on: bool = True) -> str:
    ix = await fake.slash(user, "mood", "privacy")
    await fake.acked(ix)
    page = await fake.reply(ix)
    switch = f"mr:contrib:{user}:{'on' if on else 'off'}"
    assert switch in custom_ids(page)
    click = await fake.click(user, page, switch)
    assert (await fake.acked(click))["type"] == 7  # the page's switch flips in place
    return str((await fake.reply(click))["content"])  # the follow-up (the page was edited in place)


async def test_labels_are_kept_for_everyone_only_with_their_own_consent(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot(ask_share=0.0)
    await accept_consent(fake, ALICE)
    _, reading = await check(fake, ALICE)
    spot_on = _entry(reading, f"mr:ok:{ALICE}:")
    said = await _click_text(fake, ALICE, reading, spot_on)
    assert "Help improve readings" in said  # noted for herself; nothing for everyone
    assert await read_contributions(redis) == [] and not await redis.exists(
        f"moodring:user:{{{uh(ALICE)}}}:labels"
    )
    assert "Thank you" in await _contribute(fake, ALICE)
    _, reading = await check(fake, ALICE)
    assert "helps moodring read everyone better" in await _click_text(
        fake, ALICE, reading, _entry(reading, f"mr:ok:{ALICE}:")
    )
    [mine] = await read_contributions(redis)
    assert mine.shown == 1 and [r.kind for r in mine.records] == ["confirm"]
    record = mine.records[0]
    assert set(record.probs) == set(bot.services.emotions.names) and record.label == record.served
    # one label per reading: three picks leave one label and one count in her own prior
    fix = _entry(reading, f"mr:fix:{ALICE}:")
    served = record.served
    picks = [*[c for c in ("sad", "angry", "fear") if c != served][:2], "sad" if served != "sad" else "fear"]
    for pick in picks:
        await _click_text(fake, ALICE, reading, fix, values=[pick])
    [mine] = await read_contributions(redis)
    assert [(r.kind, r.label) for r in mine.records] == [("correct", picks[-1])]
    assert sum((await bot.services.store.export(ALICE))["prior"].values()) == 1
    exported = await bot.services.store.export(ALICE)
    assert exported["contributing"] is True
    assert len(exported["contributions"]["labelled_readings"]) == 1


async def test_a_random_share_of_readings_asks_did_i_get_it_right(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot(ask_share=1.0)
    await accept_consent(fake, ALICE)
    _, before = await check(fake, ALICE)  # not contributing: never asked
    assert not any(c.startswith(f"mr:yes:{ALICE}") for c in custom_ids(before))
    await _contribute(fake, ALICE)
    _, reading = await check(fake, ALICE)
    ids = custom_ids(reading)
    assert "Did I get it right?" in reading_text(reading)
    assert any(c.startswith(f"mr:yes:{ALICE}:") for c in ids) and not any(c.startswith("mr:ok:") for c in ids)
    no = await fake.click(ALICE, reading, _entry(reading, f"mr:no:{ALICE}:"))
    await fake.acked(no)
    which = await fake.reply(no)
    assert "Which was it?" in which["content"]
    [mine] = await read_contributions(redis)
    assert mine.asked == 1 and [(r.kind, r.label) for r in mine.records] == [("no", None)]
    served = mine.records[0].served
    pick = "sad" if served != "sad" else "fear"
    await _click_text(fake, ALICE, which, _entry(which, f"mr:fix:{ALICE}:"), values=[pick])
    [mine] = await read_contributions(redis)
    assert [(r.kind, r.label) for r in mine.records] == [("no", pick)]


async def test_forget_and_withdrawing_remove_contributions_and_stale_buttons_do_nothing(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot(ask_share=0.0)
    await accept_consent(fake, ALICE)
    await _contribute(fake, ALICE)
    _, reading = await check(fake, ALICE)
    spot_on = _entry(reading, f"mr:ok:{ALICE}:")
    await _click_text(fake, ALICE, reading, spot_on)
    assert "1 labelled reading" in await _contribute(fake, ALICE, on=False)  # withdrawn: deleted
    assert await read_contributions(redis) == [] and not await redis.sismember(PEOPLE, uh(ALICE))  # type: ignore[misc]
    await _contribute(fake, ALICE)
    _, reading = await check(fake, ALICE)
    spot_on = _entry(reading, f"mr:ok:{ALICE}:")
    await _click_text(fake, ALICE, reading, spot_on)
    assert len(await read_contributions(redis)) == 1
    await _forget(fake, ALICE)
    assert await _anything_about(redis, ALICE) == [] and await read_contributions(redis) == []
    posted = len(fake.messages)
    for stale in (spot_on, f"mr:share:{ALICE}"):  # old buttons of a forgotten reading
        assert "forget you" in await _click_text(fake, ALICE, reading, stale)
    assert len(fake.messages) == posted + 2  # the two ephemeral answers: nothing re-posted
    assert await _anything_about(redis, ALICE) == []


async def test_a_stale_accept_after_forget_brings_no_consent_back(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    ix, prompt = await check(fake, ALICE)  # no consent yet: the prompt, holding the photo
    accept = next(c for c in custom_ids(prompt) if c.startswith(f"mr:consent:{ALICE}:yes:"))
    await _forget(fake, ALICE)
    click = await fake.click(ALICE, prompt, accept)
    assert (await fake.acked(click))["type"] == 7
    await fake.wait_for(lambda: "no longer valid" in fake.messages[int(prompt["id"])]["content"], 10, "stale")
    assert await _anything_about(redis, ALICE) == []  # no consent, nothing read
    del ix


async def test_share_is_not_offered_or_misworded_in_a_dm(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    _, prompt = await check_dm(fake, ALICE)
    accept = next(c for c in custom_ids(prompt) if c.startswith(f"mr:consent:{ALICE}:yes:"))
    click = await fake.click(ALICE, prompt, accept, where="dm")
    await fake.acked(click)
    reading = await fake.reply(click)  # the follow-up: the prompt itself was edited in place
    assert any(c.startswith(f"mr:fix:{ALICE}:") for c in custom_ids(reading))
    assert not any(c.startswith("mr:share:") for c in custom_ids(reading))  # the bot's DM: nowhere to share
    # a reading from before this fix, with its Share button: the click says why, in a DM's words
    share = {"type": 2, "style": 2, "label": "Share to channel", "custom_id": f"mr:share:{ALICE}"}
    old = reading | {"components": [*reading["components"], {"type": 1, "components": [share]}]}
    said = await _click_text(fake, ALICE, old, f"mr:share:{ALICE}", where="dm")
    assert "private" in said and "added to this server" not in said


async def check_dm(fake: FakeDiscord, user_id: int) -> tuple[Any, dict[str, Any]]:
    from tests.conftest import face_photo

    att = fake.upload(face_photo(size=(160, 160)))
    ix = await fake.slash(user_id, "mood", "check", attachments={"photo": att}, where="dm")
    return ix, await fake.reply(ix)


def huge_png(width: int, height: int) -> bytes:
    """A small PNG file that declares a huge picture (its pixels are never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    body = zlib.compress(b"\x00" * (width + 1) * 64)  # a few rows: never read that far
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


async def test_a_small_file_with_too_many_pixels_says_pixels(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    photo = huge_png(20_000, 20_000)
    assert len(photo) < 1_500_000  # far under the 10 MB cap: the limit it breaks is pixels
    _, reply = await check(fake, ALICE, photo)
    assert "too many pixels" in reply["content"] and "MB" not in reply["content"]


async def test_history_shows_the_models_label_beside_what_you_said(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis
) -> None:
    bot = await start_bot()
    await accept_consent(fake, ALICE)
    _, reading = await check(fake, ALICE)
    served = (await bot.services.store.history(ALICE))[0].emotion
    said = "sad" if served != "sad" else "fear"
    await _click_text(fake, ALICE, reading, _entry(reading, f"mr:fix:{ALICE}:"), values=[said])
    ix = await fake.slash(ALICE, "mood", "history")
    await fake.acked(ix)
    embed = (await fake.reply(ix))["embeds"][0]
    latest = next(f["value"] for f in embed["fields"] if f["name"] == "Latest")
    emotions = bot.services.emotions
    assert f"{emotions[served].emoji} **{served}**" in latest
    assert f"(you said {emotions[said].emoji} {said})" in latest
    week = next(f["value"] for f in embed["fields"] if f["name"] == "This week")
    assert week.startswith("1 reading:")
    assert json.dumps(embed).count("1 readings") == 0
