"""The keyless link sources (Deezer, iTunes, Odesli) and the resolver, against fakes of their real
answers on 127.0.0.1: found, unknown, 429, errors, garbage, slow; the cache, the rate limit and
the deadline. No network."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from recommender.links import Found, LinkResolver, SourceFailed, cache_key, is_direct, listen
from recommender.platforms import search_link
from recommender.sources import deezer
from recommender.tracks import Track
from tests.fakemusic import Fakes, sources

pytestmark = pytest.mark.timeout(60)

TRACK = Track(
    "Harder, Better, Faster, Stronger",
    ("Daft Punk",),
    search_link("spotify", "Daft Punk", "Harder"),
    "offline",
)


async def _find(source: Any) -> Found | None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        return await source.find(
            http, "Daft Punk", TRACK.title, {"deezer": "https://www.deezer.com/track/3135556"}
        )


@pytest.mark.parametrize("name", ["deezer", "itunes", "odesli"])
async def test_each_source_reads_its_real_answer(fakes: Fakes, name: str) -> None:
    source = {s.name: s for s in sources(fakes)}[name]
    found = await _find(source)
    assert found is not None
    if name == "deezer":
        assert found.links["deezer"].startswith("https://www.deezer.com/track/") and found.preview.endswith(
            ".mp3?hdnea=exp=1"
        )
    if name == "itunes":
        assert (
            "?i=" in found.links["apple_music"]
            and "&uo=" not in found.links["apple_music"]
            and found.preview.endswith(".m4a")
        )
    if name == "odesli":
        assert set(found.links) == {"spotify", "youtube_music", "apple_music", "deezer", "tidal"}
        assert found.page == "https://song.link/d/3135556" and found.preview is None  # the known link's id


@pytest.mark.parametrize("name", ["deezer", "itunes", "odesli"])
async def test_each_source_says_unknown_or_fails_typed(fakes: Fakes, name: str) -> None:
    source = {s.name: s for s in sources(fakes)}[name]
    fakes.mode[name] = "unknown"
    assert await _find(source) is None
    fakes.mode[name] = "429"
    with pytest.raises(SourceFailed) as limited:
        await _find(source)
    assert limited.value.retry_after_s == 30
    for mode in ("500", "garbage", "wrong-shape"):
        fakes.mode[name] = mode
        with pytest.raises(SourceFailed):
            await _find(source)
    fakes.mode[name] = "slow"
    with pytest.raises(SourceFailed, match="Timeout"):
        await _find(source)


async def test_deezer_quota_errors_come_with_status_200_and_back_off(fakes: Fakes) -> None:
    fakes.mode["deezer"] = "quota"
    with pytest.raises(SourceFailed) as quota:
        await _find(sources(fakes)[0])
    assert quota.value.retry_after_s > 0


async def test_itunes_refuses_another_artists_song_of_the_same_name(fakes: Fakes) -> None:
    async with aiohttp.ClientSession() as http:
        assert await sources(fakes)[1].find(http, "Someone Else", TRACK.title, {}) is None


async def test_the_resolver_finds_every_platform_and_caches_it(fakes: Fakes, redis: Redis) -> None:
    resolver = LinkResolver(sources(fakes), redis, deadline_s=2)
    found = (await resolver.resolve([TRACK]))[TRACK.key]
    assert set(found.links) == {"spotify", "youtube_music", "apple_music", "deezer", "tidal"}
    assert found.preview and found.page
    assert sorted(fakes.calls) == ["deezer", "itunes", "odesli"]
    assert await redis.ttl(cache_key(TRACK)) > 19 * 3_600  # about a day (Deezer previews expire)
    again = (await resolver.resolve([TRACK]))[TRACK.key]
    assert again == found and len(fakes.calls) == 3  # from the cache
    for choice in ("spotify", "youtube_music", "apple_music", "deezer", "tidal"):
        where = listen(TRACK, found, choice)  # type: ignore[arg-type]
        assert where.direct and where.url == found.links[choice] and where.preview == found.preview
    assert listen(TRACK, found, "ask").url == found.page and found.page.startswith("https://song.link/d/")


async def test_a_slow_service_costs_the_reply_the_deadline_only_and_fills_the_cache_later(
    fakes: Fakes, redis: Redis
) -> None:
    fakes.mode["odesli"] = "slow"
    resolver = LinkResolver(sources(fakes), redis, deadline_s=0.3)
    started = time.perf_counter()
    found = (await resolver.resolve([TRACK]))[TRACK.key]
    took = time.perf_counter() - started
    assert took < 0.6  # the deadline, plus the cache read
    assert set(found.links) == {"deezer", "apple_music"}  # the first round made it in time
    where = listen(TRACK, found, "tidal")
    assert not where.direct and where.url == search_link("tidal", "Daft Punk", TRACK.title)
    await resolver.drain()
    cached = Found.from_json(await redis.get(cache_key(TRACK)))
    assert "tidal" in cached.links  # the next reply has it


async def test_a_dead_network_gives_search_links_on_the_chosen_platform(redis: Redis) -> None:
    gone = [deezer.DeezerLinks(deezer.DeezerSettings(api_base="http://127.0.0.1:1"))]
    resolver = LinkResolver(gone, redis, deadline_s=0.3)
    found = (await resolver.resolve([TRACK]))[TRACK.key]
    assert listen(TRACK, found, "deezer").url == search_link("deezer", "Daft Punk", TRACK.title)
    await resolver.drain()
    assert 0 < await redis.ttl(cache_key(TRACK)) <= 3_600  # a miss is cached for an hour only


async def test_429_backs_off_every_process_and_the_rate_limit_holds(fakes: Fakes, redis: Redis) -> None:
    fakes.mode["deezer"] = "429"
    resolver = LinkResolver(sources(fakes, itunes=1), redis, deadline_s=2)
    other = Track(
        "Around the World", ("Daft Punk",), search_link("spotify", "Daft Punk", "Around"), "offline"
    )
    third = Track("One More Time", ("Daft Punk",), search_link("spotify", "Daft Punk", "One"), "offline")
    await resolver.resolve([TRACK])
    assert await redis.pttl("moodring:links:backoff:deezer") > 25_000
    await resolver.resolve([other, third])
    assert fakes.calls.count("deezer") == 1  # backed off: not asked again
    assert fakes.calls.count("itunes") == 1  # one a minute: the second and third track skip it


async def test_a_skipped_source_is_asked_again_soon_not_a_day_later(fakes: Fakes, redis: Redis) -> None:
    resolver = LinkResolver(sources(fakes, itunes=1), redis, deadline_s=2)
    other = Track(
        "Around the World", ("Daft Punk",), search_link("spotify", "Daft Punk", "Around"), "offline"
    )
    await resolver.resolve([TRACK])
    await resolver.resolve([other])  # iTunes' one a minute is spent: skipped for this track
    assert await redis.ttl(cache_key(TRACK)) > 3_600  # everyone answered: kept about a day
    assert 0 < await redis.ttl(cache_key(other)) <= 600  # asked again within ten minutes


async def test_warming_looks_up_what_is_not_cached_yet(fakes: Fakes, redis: Redis) -> None:
    from recommender.catalogs import load_offline_catalog

    tracks = load_offline_catalog().tracks[:4]
    resolver = LinkResolver(sources(fakes), redis)
    await resolver.resolve(tracks[:1], deadline_s=2)
    assert await resolver.warm(tracks, pace_s=0) == 3  # the first was cached by a reply
    assert all([await redis.exists(cache_key(t)) for t in tracks])
    assert await resolver.warm(tracks, pace_s=0) == 0
    assert resolver.warm_pace_s() == 12.0  # half of Odesli's 10 a minute


async def test_a_reply_waits_only_for_the_listeners_own_platform(fakes: Fakes, redis: Redis) -> None:
    fakes.mode["odesli"] = "slow"  # 2 s: the other platforms' links come late
    resolver = LinkResolver(sources(fakes), redis, deadline_s=1.5)
    started = time.perf_counter()
    found = (await resolver.resolve([TRACK], want="deezer"))[TRACK.key]
    assert "deezer" in found.links and time.perf_counter() - started < 1.0  # not the whole deadline
    await resolver.drain()


async def test_links_that_land_after_the_deadline_improve_the_reply_never_worsen_it(
    fakes: Fakes, redis: Redis
) -> None:
    from recommender.catalogs import load_offline_catalog
    from recommender.mood import load_mood_map
    from recommender.service import MemoryHistory, Recommender

    fakes.delays.update(deezer=0.8, itunes=0.8)
    resolver = LinkResolver(sources(fakes), redis, deadline_s=0.3)
    rec = Recommender(load_mood_map(), [load_offline_catalog()], MemoryHistory(), links=resolver)
    sent = await rec.recommend("happy", n=1, platform="deezer")
    assert not is_direct(sent[0].track, "deezer")  # the reply went out with a search on Deezer
    better = await rec.settled(sent, "deezer")
    assert better is not None and better[0].track.url.startswith("https://www.deezer.com/track/")
    assert is_direct(better[0].track, "deezer") and better[0].track.preview_url
    assert await rec.settled(better, "deezer") is None  # nothing more to add: no edit
    await redis.delete(cache_key(sent[0].track))  # the cache expired meanwhile: a known link stays
    assert await rec.settled(better, "deezer") is None
