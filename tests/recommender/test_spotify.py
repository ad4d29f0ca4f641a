"""SpotifyCatalog through real spotipy against a fake Spotify (token + search) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from recommender.catalogs import load_offline_catalog
from recommender.mood import load_mood_map
from recommender.service import MemoryHistory, Recommender
from recommender.sources import build_catalogs
from recommender.sources.spotify import BACKOFF_KEY, TOKEN_KEY, SpotifySettings, build_spotify_catalog
from tests.fakemusic import FakeSpotify
from tests.fakemusic import spotify_settings as _settings

pytestmark = pytest.mark.timeout(60)


def _recommender(fake: FakeSpotify, redis: Redis, redis_url: str, **kw: object) -> Recommender:
    catalogs = [build_spotify_catalog(_settings(fake, **kw), redis, redis_url), load_offline_catalog()]
    return Recommender(load_mood_map(), catalogs, MemoryHistory())


async def test_search_results_become_tracks_cached_in_redis(
    spotify: FakeSpotify, redis: Redis, redis_server: str
) -> None:
    rec = _recommender(spotify, redis, redis_server)
    picks = await rec.recommend("happy", user="u1")
    assert len(picks) == 5 and {p.track.source for p in picks} == {"spotify"}
    assert all(p.track.url.startswith("https://open.spotify.com/track/") for p in picks)
    assert len({p.track.main_artist for p in picks}) == 5
    assert await redis.get(TOKEN_KEY) is not None  # spotipy's token cache lives in Redis
    searches = spotify.paths.count("/v1/search")
    await rec.recommend("happy", user="u2")
    assert spotify.paths.count("/v1/search") == searches  # second call served from the cache
    assert set(spotify.paths) <= {"/api/token", "/v1/search"}  # search only, no removed endpoints


async def test_429_sets_a_shared_backoff_and_falls_back_to_offline(
    spotify: FakeSpotify, redis: Redis, redis_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    spotify.mode = "429"
    rec = _recommender(spotify, redis, redis_server)
    with caplog.at_level(logging.WARNING):
        picks = await rec.recommend("sad", user="u1")
    assert len(picks) == 5 and {p.track.source for p in picks} == {"offline"}
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    assert 0 < await redis.pttl(BACKOFF_KEY) <= 2000
    calls = len(spotify.paths)
    other_process = _recommender(spotify, redis, redis_server)  # another bot process, same Redis
    picks = await other_process.recommend("sad", user="u2")
    assert {p.track.source for p in picks} == {"offline"} and len(spotify.paths) == calls
    spotify.mode = "ok"
    await asyncio.sleep(2.1)
    picks = await rec.recommend("sad", user="u3")
    assert {p.track.source for p in picks} == {"spotify"}


@pytest.mark.parametrize("mode", ["500", "slow"])
async def test_outage_or_timeout_falls_back_quickly(
    spotify: FakeSpotify, redis: Redis, redis_server: str, mode: str
) -> None:
    spotify.mode = mode
    rec = _recommender(spotify, redis, redis_server, timeout_s=0.5)
    loop = asyncio.get_running_loop()
    t = loop.time()
    picks = await rec.recommend("neutral", user="u1")
    assert len(picks) == 5 and {p.track.source for p in picks} == {"offline"}
    assert loop.time() - t < 1.8


async def test_expired_token_is_replaced_and_the_search_retried(
    spotify: FakeSpotify, redis: Redis, redis_server: str
) -> None:
    await redis.set(TOKEN_KEY, '{"access_token": "old", "token_type": "Bearer", "expires_at": 9999999999}')
    spotify.stale_tokens.add("old")
    rec = _recommender(spotify, redis, redis_server)
    picks = await rec.recommend("happy", user="u1")
    assert {p.track.source for p in picks} == {"spotify"}
    assert spotify.tokens_issued == 1
    # A token that can't be renewed: the user still gets music, from the offline catalog.
    await redis.flushdb()
    await redis.set(TOKEN_KEY, '{"access_token": "old", "token_type": "Bearer", "expires_at": 9999999999}')
    spotify.token_ok = False
    picks = await rec.recommend("sad", user="u2")
    assert len(picks) == 5 and {p.track.source for p in picks} == {"offline"}


async def test_without_credentials_only_the_offline_catalog_is_used(
    redis: Redis, redis_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        catalogs = build_catalogs(
            {"spotify": SpotifySettings(client_id=None, client_secret=None)}, redis, redis_server
        )
    assert [c.name for c in catalogs] == ["offline"]
    assert any("offline" in r.getMessage() for r in caplog.records)
    spotify_settings = SpotifySettings(client_id="a", client_secret="b")  # type: ignore[arg-type]
    assert [c.name for c in build_catalogs({"spotify": spotify_settings}, redis, redis_server)] == [
        "spotify",
        "offline",
    ]
