"""Fakes of the keyless music services moodring asks for links (Deezer, iTunes, Odesli), on one
127.0.0.1 port, answering in the shape their real APIs do (payloads copied in shape), with modes
for every failure: unknown, 429, 500, garbage, a wrong shape, slow, Deezer's quota error."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from recommender.sources import deezer, itunes, odesli
from recommender.sources.spotify import SpotifySettings


def deezer_hit(
    n: int = 3135556, artist: str = "Daft Punk", title: str = "Harder, Better, Faster, Stronger"
) -> dict[str, Any]:
    """One item of https://api.deezer.com/search, as Deezer sends it (fields moodring ignores too)."""
    return {
        "id": n,
        "readable": True,
        "title": title,
        "title_short": title,
        "link": f"https://www.deezer.com/track/{n}",
        "duration": 224,
        "rank": 871553,
        "explicit_lyrics": False,
        "preview": f"https://cdnt-preview.dzcdn.net/api/1/1/a/b/c/0/{n}.mp3?hdnea=exp=1",
        "artist": {"id": 27, "name": artist, "link": "https://www.deezer.com/artist/27", "type": "artist"},
        "album": {"id": 302127, "title": "Discovery", "type": "album"},
        "type": "track",
    }


def itunes_hit(artist: str = "Daft Punk", n: int = 697195787) -> dict[str, Any]:
    """One result of https://itunes.apple.com/search?entity=song."""
    return {
        "wrapperType": "track",
        "kind": "song",
        "artistId": 5468295,
        "collectionId": 697194953,
        "trackId": n,
        "artistName": artist,
        "collectionName": "Discovery",
        "trackName": "Harder, Better, Faster, Stronger",
        "trackViewUrl": f"https://music.apple.com/us/album/harder-better-faster-stronger/697194953?i={n}&uo=4",
        "previewUrl": f"https://audio-ssl.itunes.apple.com/itunes-assets/AudioPreview/aa/bb/{n}.aac.p.m4a",
        "trackTimeMillis": 224693,
        "country": "USA",
        "currency": "USD",
        "primaryGenreName": "Electronic",
    }


def odesli_answer(deezer_id: int = 3135556) -> dict[str, Any]:
    """https://api.song.link/v1-alpha.1/links?url=… (linksByPlatform trimmed to a few platforms)."""
    return {
        "entityUniqueId": f"DEEZER_SONG::{deezer_id}",
        "userCountry": "US",
        "pageUrl": f"https://song.link/d/{deezer_id}",
        "entitiesByUniqueId": {},
        "linksByPlatform": {
            "spotify": {
                "country": "US",
                "url": f"https://open.spotify.com/track/5W3cjX2J3tjhG8zb{deezer_id:06d}"[:53],
                "entityUniqueId": f"SPOTIFY_SONG::{deezer_id}",
            },
            "appleMusic": {
                "url": f"https://geo.music.apple.com/us/album/_/697194953?i={deezer_id}&app=music"
            },
            "youtubeMusic": {"url": f"https://music.youtube.com/watch?v=yt{deezer_id}"},
            "deezer": {"url": f"https://www.deezer.com/track/{deezer_id}"},
            "tidal": {"url": f"https://listen.tidal.com/track/{deezer_id}"},
            "amazonMusic": {"url": "https://music.amazon.com/albums/B00?trackAsin=B00"},
        },
    }


@dataclass
class Fakes:
    """The three services on one port; ``mode[name]``: ok, unknown, 429, 500, garbage, slow, quota."""

    mode: dict[str, str] = field(default_factory=lambda: {"deezer": "ok", "itunes": "ok", "odesli": "ok"})
    artists: dict[str, str] = field(default_factory=dict)  # iTunes term -> artist (default: Daft Punk)
    delays: dict[str, float] = field(default_factory=dict)  # per service: answers wait this long
    calls: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _answer(self, name: str, ok: Any, unknown: Any) -> web.Response:
        self.calls.append(name)
        await asyncio.sleep(self.delays.get(name, 0.0))
        mode = self.mode[name]
        if mode == "slow":
            await asyncio.sleep(2)
            return web.json_response(ok)
        if mode == "429":
            return web.json_response({"message": "rate limited"}, status=429, headers={"Retry-After": "30"})
        if mode == "500":
            return web.Response(status=500, text="<html>oops</html>")
        if mode == "garbage":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        if mode == "wrong-shape":
            return web.json_response({"data": "not a list", "results": {}, "linksByPlatform": []})
        if mode == "quota":
            return web.json_response(
                {"error": {"type": "Exception", "message": "Quota limit exceeded", "code": 4}}
            )
        if mode == "unknown":
            if name == "odesli":
                return web.json_response({"statusCode": 404, "code": "could_not_resolve_entity"}, status=404)
            return web.json_response(unknown)
        return web.json_response(
            ok, content_type="text/javascript" if name == "itunes" else "application/json"
        )

    async def deezer(self, request: web.Request) -> web.Response:
        q = re.fullmatch(r'artist:"(.*)" track:"(.*)"', request.query["q"])
        assert q is not None, request.query["q"]
        hit = deezer_hit(zlib.crc32(q[0].encode()) % 10**9, q[1], q[2])
        return await self._answer("deezer", {"data": [hit], "total": 1}, {"data": [], "total": 0})

    async def itunes(self, request: web.Request) -> web.Response:
        assert request.query["entity"] == "song"
        term = request.query["term"]
        hit = itunes_hit(self.artists.get(term, "Daft Punk"), zlib.crc32(term.encode()) % 10**9)
        return await self._answer(
            "itunes", {"resultCount": 1, "results": [hit]}, {"resultCount": 0, "results": []}
        )

    async def odesli(self, request: web.Request) -> web.Response:
        url = request.query["url"]
        assert url.startswith("https://")
        n = int(url.rsplit("/", 1)[-1]) if url.startswith("https://www.deezer.com/track/") else 3135556
        return await self._answer("odesli", odesli_answer(n), None)


async def serve(routes: list[web.RouteDef]) -> tuple[web.AppRunner, int]:
    """An aiohttp app with ``routes`` on a free 127.0.0.1 port; its runner (clean it up) and port."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def start_fakes() -> AsyncIterator[Fakes]:
    """The fake services, up until the generator is closed."""
    fake = Fakes()
    routes = [
        web.get("/deezer/search", fake.deezer),
        web.get("/itunes/search", fake.itunes),
        web.get("/odesli/links", fake.odesli),
    ]
    runner, fake.port = await serve(routes)
    yield fake
    await runner.cleanup()


def sources(fake: Fakes, **per_minute: int) -> list[Any]:
    return [
        deezer.DeezerLinks(
            deezer.DeezerSettings(api_base=fake.url("deezer"), per_minute=per_minute.get("deezer", 300))
        ),
        itunes.ItunesLinks(
            itunes.ItunesSettings(api_base=fake.url("itunes"), per_minute=per_minute.get("itunes", 20))
        ),
        odesli.OdesliLinks(
            odesli.OdesliSettings(api_base=fake.url("odesli"), per_minute=per_minute.get("odesli", 10))
        ),
    ]


# Spotify's Web API (token + search), for the Spotify catalog through real spotipy ---------------


def _item(n: int, query: str) -> dict[str, object]:
    return {
        "id": f"{abs(hash((query, n))) % 10**22:022d}",
        "name": f"{query} song {n}",
        "artists": [{"name": f"{query} artist {n}"}],
        "album": {"images": [{"url": "https://i.scdn.co/image/x"}], "release_date": "2019-05-01"},
        "preview_url": None,
    }


@dataclass
class FakeSpotify:
    mode: str = "ok"  # ok | 429 | 500 | slow
    token_ok: bool = True
    stale_tokens: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    tokens_issued: int = 0
    port: int = 0

    async def token(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        if not self.token_ok:
            return web.json_response({"error": "invalid_client"}, status=400)
        self.tokens_issued += 1
        return web.json_response(
            {"access_token": f"fresh-{self.tokens_issued}", "token_type": "Bearer", "expires_in": 3600}
        )

    async def search(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token in self.stale_tokens:
            return web.json_response(
                {"error": {"status": 401, "message": "The access token expired"}}, status=401
            )
        if self.mode == "429":
            return web.json_response(
                {"error": {"status": 429, "message": "rate limited"}},
                status=429,
                headers={"Retry-After": "2"},
            )
        if self.mode == "500":
            return web.json_response({"error": {"status": 500, "message": "oops"}}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(2)
        q = request.query["q"]
        assert request.query["type"] == "track" and int(request.query["limit"]) <= 10
        return web.json_response({"tracks": {"items": [_item(n, q) for n in range(10)]}})


async def start_spotify() -> AsyncIterator[FakeSpotify]:
    """A fake Spotify (client-credentials token + search), up until the generator is closed."""
    fake = FakeSpotify()
    runner, fake.port = await serve([web.post("/api/token", fake.token), web.get("/v1/search", fake.search)])
    yield fake
    await runner.cleanup()


def spotify_settings(fake: FakeSpotify, **kw: object) -> SpotifySettings:
    values: dict[str, object] = {
        "client_id": "id",
        "client_secret": "secret",
        "api_base": f"http://127.0.0.1:{fake.port}/v1",
        "token_url": f"http://127.0.0.1:{fake.port}/api/token",
        "timeout_s": 1.0,
    }
    values.update(kw)
    return SpotifySettings(**values)  # type: ignore[arg-type]
