"""Music where people listen, through the real bot on the fake Discord: each user's platform is
kept with consent (export shows it, forget deletes it), readings link the exact track there (fake
Deezer / iTunes / Odesli) with a preview, "ask every time" offers every platform, a session's
members each get their own platform's links, and every reply stays within Discord's limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from bot import texts
from bot.store import user_prefix
from recommender.links import Found, LinkResolver, cache_key
from recommender.platforms import PLATFORMS
from tests.bot.conftest import BotFactory, uh
from tests.bot.helpers import accept_consent, check, links, start_session, walk
from tests.fakediscord import CHANNEL_ID, FakeDiscord
from tests.fakemusic import Fakes, sources

pytestmark = pytest.mark.timeout(180)

ALICE, BOB = 6101, 6202
HOSTS = {
    "spotify": "https://open.spotify.com/",
    "youtube_music": "https://music.youtube.com/",
    "apple_music": "https://geo.music.apple.com/",
    "deezer": "https://www.deezer.com/",
    "tidal": "https://listen.tidal.com/",
}


def _resolver(fakes: Fakes, redis: Redis) -> LinkResolver:
    # a generous deadline: the 300 ms one is tested against slow fakes in tests/recommender
    return LinkResolver(sources(fakes), redis, deadline_s=2.0)


async def _say(fake: FakeDiscord, user: int, *sub: str, **options: Any) -> dict[str, Any]:
    ix = await fake.slash(user, "mood", sub[0], options=options or None)
    await fake.acked(ix)
    return await fake.reply(ix)


def _v2_text(msg: dict[str, Any]) -> str:
    """A Components V2 message's text displays (Discord allows 4000 characters in all)."""
    return "".join(c.get("content", "") for c in walk(msg["components"]) if c.get("type") == 10)


async def test_a_platform_is_kept_with_consent_used_exported_and_forgotten(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis, fakes: Fakes
) -> None:
    await start_bot(links=_resolver(fakes, redis), warm_links=False)
    key = f"{user_prefix(uh(ALICE))}:platform"
    first = await _say(fake, ALICE, "music", platform="deezer")
    assert first["content"] == texts.CONSENT and not await redis.exists(key)  # nothing kept before consent
    await accept_consent(fake, ALICE)
    assert "now open on **Deezer**" in (await _say(fake, ALICE, "music", platform="deezer"))["content"]
    assert "open on **Deezer**" in (await _say(fake, ALICE, "music"))["content"]

    _, reading = await check(fake, ALICE)
    listen = links(reading)
    assert len(listen) == 5 and all(u.startswith("https://www.deezer.com/track/") for u in listen)
    assert "spotify" not in json.dumps(reading["components"])  # never a service she didn't choose
    assert _v2_text(reading).count("Preview](https://") == 5

    exported = await _say(fake, ALICE, "export")
    data = json.loads(fake.cdn[int(exported["attachments"][0]["id"])])
    assert data["music_platform"] == "deezer"
    ix = await fake.slash(ALICE, "mood", "forget")
    await fake.acked(ix)
    prompt = await fake.reply(ix)
    await fake.acked(await fake.click(ALICE, prompt, f"mr:forget:{ALICE}:yes"))
    await fake.wait_for(lambda: "deleted" in fake.messages[int(prompt["id"])]["content"], 10, "forget")
    assert not await redis.exists(key)


async def test_a_reply_sent_at_the_deadline_is_edited_with_the_exact_links_when_they_land(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis, fakes: Fakes
) -> None:
    # a cold cache and services slower than the 300 ms deadline: the reply goes out with search
    # links on Deezer, then the same message is edited with the exact tracks and previews
    fakes.delays.update(deezer=1.0, itunes=1.0)
    bot = await start_bot(links=LinkResolver(sources(fakes), redis, deadline_s=0.3), warm_links=False)
    await accept_consent(fake, ALICE)
    await _say(fake, ALICE, "music", platform="deezer")
    _, reading = await check(fake, ALICE)
    first = links(reading)
    assert len(first) == 5 and all(u.startswith("https://www.deezer.com/search") for u in first)
    attachments = [a["id"] for a in reading["attachments"]]
    await bot.late_links.tasks.drain()
    edited = fake.messages[int(reading["id"])]
    assert all(u.startswith("https://www.deezer.com/track/") for u in links(edited)), links(edited)
    assert len(links(edited)) == 5 and _v2_text(edited).count("Preview](https://") == 5
    assert [a["id"] for a in edited["attachments"]] == attachments  # the heatmap is kept, not sent again

    # a correction answers on her platform too (and is completed the same way)
    select = next(c for c in walk(edited["components"]) if str(c.get("custom_id", "")).startswith("mr:fix:"))
    ix = await fake.click(ALICE, edited, select["custom_id"], values=["sad"])
    await fake.acked(ix)
    answer = await fake.reply(ix)
    await bot.late_links.tasks.drain()
    buttons = [c["url"] for c in walk(fake.messages[int(answer["id"])]["components"]) if c.get("url")]
    assert len(buttons) == 5 and all(u.startswith("https://www.deezer.com/") for u in buttons), buttons


async def test_without_any_link_source_each_link_is_a_search_on_the_chosen_platform(
    fake: FakeDiscord, start_bot: BotFactory, worker: None
) -> None:
    await start_bot()  # no network, no keys: search links
    await accept_consent(fake, ALICE)
    await _say(fake, ALICE, "music", platform="tidal")
    _, reading = await check(fake, ALICE)
    assert [u.split("?")[0] for u in links(reading)] == ["https://listen.tidal.com/search"] * 5


@pytest.mark.parametrize("v2", [True, False])
async def test_ask_every_time_offers_every_platform_within_discords_limits(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis, fakes: Fakes, v2: bool
) -> None:
    fakes.mode["deezer"] = fakes.mode["itunes"] = "500"  # nothing known: a link per platform
    await start_bot(links=_resolver(fakes, redis), components_v2=v2, warm_links=False)
    await accept_consent(fake, ALICE)
    assert "every platform" in (await _say(fake, ALICE, "music", platform="ask"))["content"]
    _, reading = await check(fake, ALICE)
    if v2:
        assert links(reading) == []  # no single Listen: the platforms are in each track's text
        text = _v2_text(reading)
        assert len(text) <= 4000 and len(list(walk(reading["components"]))) <= 40
    else:
        embed = reading["embeds"][0]
        text = json.dumps(embed)
        sizes = [len(f["value"]) for f in embed["fields"]]
        assert max(sizes) <= 1024 and len(embed["fields"]) <= 25
        total = len(embed.get("title", "")) + len(embed.get("description", "")) + sum(sizes)
        assert total + sum(len(f["name"]) for f in embed["fields"]) <= 6000
    for host in ("open.spotify.com/search", "music.youtube.com/search", "music.apple.com/us/search"):
        assert text.count(host) == 5, host
    assert text.count("www.deezer.com/search") == 5 and text.count("listen.tidal.com/search") == 5


async def test_ask_every_time_with_the_sources_opens_one_page_for_every_platform(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis, fakes: Fakes
) -> None:
    await start_bot(links=_resolver(fakes, redis), warm_links=False)
    await accept_consent(fake, ALICE)
    await _say(fake, ALICE, "music", platform="ask")
    _, reading = await check(fake, ALICE)
    assert [u[:20] for u in links(reading)] == ["https://song.link/d/"] * 5


async def test_a_session_mixing_platforms_gives_each_member_their_own_links(
    fake: FakeDiscord, start_bot: BotFactory, worker: None, redis: Redis, fakes: Fakes
) -> None:
    bot = await start_bot(links=_resolver(fakes, redis), warm_links=False)
    for user, platform in ((ALICE, "deezer"), (BOB, "apple_music")):
        await accept_consent(fake, user)
        await _say(fake, user, "music", platform=platform)
    board = await start_session(fake, ALICE)
    join = await fake.click(BOB, board, f"mr:sess:{CHANNEL_ID}:join")
    await fake.acked(join)
    await check(fake, ALICE)  # a member's check-in fills the shared queue (just after the reply)
    for _ in range(100):
        if (await bot.services.sessions.view(CHANNEL_ID)).queue:
            break
        await asyncio.sleep(0.05)
    shown = fake.messages[int(board["id"])]
    assert "http" not in json.dumps(shown.get("embeds"))  # the board: the queue once, no one's links
    said = {}
    for user in (ALICE, BOB):
        ix = await fake.click(user, board, f"mr:sess:{CHANNEL_ID}:listen")
        await fake.acked(ix)
        said[user] = (await fake.reply(ix))["content"]
    assert "on **Deezer**" in said[ALICE] and "on **Apple Music**" in said[BOB]
    for user, mine in ((ALICE, "deezer"), (BOB, "apple_music")):
        assert said[user].count(HOSTS[mine]) == 5, said[user]
        others = [p for p in PLATFORMS if p != mine]
        assert not any(HOSTS[p] in said[user] for p in others), said[user]
        assert len(said[user]) <= 2000


async def test_a_bot_warms_its_catalogs_links_in_the_background(
    fake: FakeDiscord, start_bot: BotFactory, redis: Redis, fakes: Fakes
) -> None:
    bot = await start_bot(links=_resolver(fakes, redis))
    first = bot.services.recommender.catalogs[-1].tracks[0]  # type: ignore[attr-defined]
    for _ in range(100):  # the first lookup starts at once, the next ones at the sources' pace
        if await redis.exists(cache_key(first)):
            break
        await asyncio.sleep(0.05)
    cached = Found.from_json(await redis.get(cache_key(first)))
    assert set(cached.links) == set(PLATFORMS)
    assert fakes.calls.count("odesli") == 1  # 12 s apart: half of Odesli's 10 a minute
