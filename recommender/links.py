"""Exact track links and previews for picks that came as artist + title, on every platform.

The link sources (:mod:`recommender.sources`: modules whose ``build`` returns a
:class:`LinkSource`) are asked in two rounds: those that search by artist and title (Deezer,
iTunes), then those that map a known link to the other platforms (Odesli). Answers are cached in
Redis (a day; a miss for an hour; a lookup a source skipped or failed for ten minutes), each
source is rate-limited across processes and backs off after a 429, and a reply waits at most
``deadline_s`` for them: what isn't known by then is a search link on the listener's platform,
and the lookup finishes in the background so the next reply has it. A bot also warms the cache
with its built-in catalog at the sources' pace (:meth:`LinkResolver.warm`), so replies rarely wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.platforms import PLATFORMS, Choice, search_link
from recommender.tracks import Track

log = logging.getLogger(__name__)

CACHE_TTL_S = 86_400  # a day: a Deezer preview URL carries an expiring token
MISS_TTL_S = 3_600  # every source answered and none knows the track
RETRY_TTL_S = 600  # a source was skipped or failed: its part is asked again this soon


class SourceFailed(Exception):
    """A link source could not answer (timeout, refused, garbage); ``retry_after_s`` after a 429."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Found:
    """What the sources know about one track."""

    links: Mapping[str, str] = field(default_factory=dict)  # platform -> the exact track
    preview: str | None = None  # a 30-second audio clip (MP3 or AAC)
    page: str | None = None  # one page listing every platform (song.link)

    def merged(self, other: Found) -> Found:
        return Found({**other.links, **self.links}, self.preview or other.preview, self.page or other.page)

    def to_json(self) -> str:
        return json.dumps({"links": dict(self.links), "preview": self.preview, "page": self.page})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Found:
        data = json.loads(raw)
        return cls(dict(data.get("links") or {}), data.get("preview"), data.get("page"))


class LinkSettings(BaseSettings):
    """What every keyless link source's settings have; a source's own class sets its environment
    prefix (``MOODRING_<NAME>_``) and defaults."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    enabled: bool = Field(default=True, description="ask this service (keyless; needs network)")
    api_base: str = ""
    per_minute: int = Field(default=60, ge=1, description="requests per minute, all bot processes together")


class KeylessSource:
    """A link source's common part: its name, its round, its base URL and its budget."""

    name = ""
    needs_link = False  # True: it maps a known link (it runs in the second round)

    def __init__(self, settings: LinkSettings) -> None:
        self.base = settings.api_base.rstrip("/")
        self.per_minute = settings.per_minute


class LinkSource(Protocol):
    """One keyless service. ``needs_link``: it maps a known link (else: it searches)."""

    name: str
    needs_link: bool
    per_minute: int

    async def find(self, http: Any, artist: str, title: str, known: Mapping[str, str]) -> Found | None: ...


@dataclass(frozen=True, slots=True)
class Listen:
    """Where one listener's "Listen" goes for one track."""

    url: str
    direct: bool  # the exact track (else a search on the listener's platform)
    preview: str | None = None
    every_platform: tuple[tuple[str, str], ...] = ()  # "ask every time" without a page: one link each


def listen(track: Track, found: Found | None, choice: Choice) -> Listen:
    """The link for ``choice``: the exact track where known, else a search on that platform."""
    found = found or Found()
    artist = track.artists[0] if track.artists else ""
    if choice == "ask":
        if found.page:
            return Listen(found.page, True, found.preview)
        every = tuple((p, found.links.get(p) or search_link(p, artist, track.title)) for p in PLATFORMS)
        return Listen(every[0][1], False, found.preview, every)
    direct = found.links.get(choice)
    if direct:
        return Listen(direct, True, found.preview)
    return Listen(search_link(choice, artist, track.title), False, found.preview)


def _known(track: Track) -> dict[str, str]:
    return {"spotify": track.url} if track.url.startswith("https://open.spotify.com/track/") else {}


def _has(found: Found, want: Choice) -> bool:
    return bool(found.page) if want == "ask" else want in found.links


def cache_key(track: Track) -> str:
    name = f"{track.main_artist}|{track.title.lower()}"
    return "moodring:links:" + hashlib.sha1(name.encode()).hexdigest()


class LinkResolver:
    """Looks up links for tracks within a deadline, through the cache and the sources."""

    def __init__(
        self, sources: Sequence[LinkSource], redis: Any, deadline_s: float = 0.3, timeout_s: float = 3.0
    ):
        self.sources = list(sources)
        self.redis = redis
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s  # a lookup still running after the deadline gives up after this
        self._background: set[asyncio.Task[Any]] = set()
        # lookups a reply stopped waiting for: cache key -> (task, what it fills in, the track's key)
        self._running: dict[str, tuple[asyncio.Task[Any], dict[str, Found], str]] = {}

    async def resolve(
        self, tracks: Sequence[Track], deadline_s: float | None = None, want: Choice | None = None
    ) -> dict[str, Found]:
        """What is known about each track (by ``Track.key``) after at most the deadline; with
        ``want``, as soon as every track has its link on that platform (or its page, for "ask")."""
        known: dict[str, Found] = {t.key: Found(_known(t)) for t in tracks}
        if not tracks:
            return known
        cached = await self.redis.mget([cache_key(t) for t in tracks]) if self.redis else [None] * len(tracks)
        missing = []
        for t, raw in zip(tracks, cached, strict=True):
            if raw is None:
                missing.append(t)
            else:
                known[t.key] = known[t.key].merged(Found.from_json(raw))
        if not missing or not self.sources:
            return known
        task = asyncio.create_task(self._lookup(missing, known), name="track links")
        self._background.add(task)
        running = {cache_key(t): (task, known, t.key) for t in missing}
        self._running.update(running)
        task.add_done_callback(lambda done: self._finished(done, running))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deadline_s if deadline_s is not None else self.deadline_s)
        while not task.done():
            if want is not None and all(_has(known[t.key], want) for t in tracks):
                break  # the listener's links are here: the rest fills the cache in the background
            left = deadline - loop.time()
            if left <= 0:
                log.info(
                    "track links: %d of %d still looked up after the deadline", len(missing), len(tracks)
                )
                break
            await asyncio.wait({task}, timeout=min(0.02, left))
        return dict(known)

    async def settle(self, tracks: Sequence[Track], timeout_s: float | None = None) -> list[Found]:
        """What is known about each of ``tracks`` once the lookups their reply stopped waiting for
        have ended (at most ``timeout_s``, default the lookup timeout): a reply sent at the
        deadline is then edited with the links that came later. ``tracks`` may already carry a
        listener's links (matched by artist and title)."""
        keys = [cache_key(t) for t in tracks]
        tasks = {self._running[k][0] for k in keys if k in self._running}
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout_s + 0.5 if timeout_s is None else timeout_s)
        cached = await self.redis.mget(keys) if self.redis else [None] * len(keys)
        out = []
        for track, key, raw in zip(tracks, keys, cached, strict=True):
            found = Found(_known(track))
            if raw is not None:
                found = found.merged(Found.from_json(raw))
            if key in self._running:  # still running (timed out): what it has found so far
                _, known, original = self._running[key]
                found = found.merged(known[original])
            out.append(found)
        return out

    def _finished(self, task: asyncio.Task[Any], running: Mapping[str, tuple[Any, ...]]) -> None:
        self._background.discard(task)
        for key in running:
            if self._running.get(key, (None,))[0] is task:
                del self._running[key]

    def warm_pace_s(self) -> float:
        """Seconds between two warming lookups: half the tightest source's per-minute budget
        (the other half is the replies')."""
        return 120.0 / min((s.per_minute for s in self.sources), default=60)

    async def warm(self, tracks: Sequence[Track], pace_s: float | None = None) -> int:
        """Look up the tracks not cached yet, one every ``pace_s`` seconds (a bot's built-in
        catalog: replies then find their links cached instead of waiting for them). Any number of
        processes may warm at once: a track is claimed before it is looked up. Returns how many
        this call looked up."""
        if self.redis is None or not self.sources:
            return 0
        done = 0
        for track in tracks:
            key = cache_key(track)
            if await self.redis.exists(key) or not await self.redis.set(
                f"{key}:warming", "1", nx=True, ex=60
            ):
                continue
            await self._lookup([track], {track.key: Found(_known(track))})
            done += 1
            await asyncio.sleep(self.warm_pace_s() if pace_s is None else pace_s)
        return done

    async def drain(self) -> None:
        """Wait for lookups that outlived their reply (tests, shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _lookup(self, tracks: Sequence[Track], known: dict[str, Found]) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(
            timeout=timeout, headers={"User-Agent": "moodring (Discord bot)"}
        ) as http:
            await asyncio.gather(*(self._one(http, t, known) for t in tracks))

    async def _one(self, http: Any, track: Track, known: dict[str, Found]) -> None:
        artist = track.artists[0] if track.artists else ""
        found = known[track.key]
        complete = True
        for needs_link in (False, True):
            round_ = [s for s in self.sources if s.needs_link == needs_link]
            if needs_link and not found.links:
                break
            answers = await asyncio.gather(
                *(self._ask(s, http, artist, track.title, found.links) for s in round_)
            )
            for answer, answered in answers:
                complete = complete and answered
                if answer is not None:
                    found = found.merged(answer)
            known[track.key] = found  # what the reply can use if the deadline comes now
        if self.redis is not None:  # None: a one-off command line lookup, no cache
            if not complete:  # a source was skipped (rate, back-off) or failed: ask again soon
                ttl = RETRY_TTL_S
            elif found.links or found.preview:  # spread, so a day's lookups don't expire at once
                ttl = int(CACHE_TTL_S * random.uniform(0.8, 1.2))
            else:
                ttl = MISS_TTL_S
            await self.redis.set(cache_key(track), found.to_json(), ex=ttl)

    async def _ask(
        self, source: LinkSource, http: Any, artist: str, title: str, links: Mapping[str, str]
    ) -> tuple[Found | None, bool]:
        """The source's answer, and whether it answered (False: skipped or failed)."""
        backoff = f"moodring:links:backoff:{source.name}"
        window = f"moodring:links:rate:{source.name}:{int(time.time() // 60)}"
        if self.redis is not None:
            if await self.redis.exists(backoff):
                return None, False
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(window)
                pipe.expire(window, 120)
                used, _ = await pipe.execute()
            if int(used) > source.per_minute:  # polite: the service's published limit, across processes
                return None, False
        try:
            return await source.find(http, artist, title, links), True
        except SourceFailed as exc:
            if exc.retry_after_s > 0 and self.redis is not None:
                await self.redis.set(backoff, "1", px=max(1, int(exc.retry_after_s * 1000)))
            log.info("link source %s: %s", source.name, exc)
            return None, False


async def get_json(
    http: Any, url: str, params: Mapping[str, str], source: str, missing_ok: bool = False
) -> dict[str, Any]:
    """GET a JSON object from a source; :class:`SourceFailed` for anything else (429: with its wait)."""
    import aiohttp

    try:
        async with http.get(url, params=dict(params)) as resp:
            if resp.status == 429:
                raise SourceFailed("429 Too Many Requests", retry_after_s=_retry_after(resp.headers))
            if resp.status == 404 and missing_ok:
                return {}
            if resp.status != 200:
                raise SourceFailed(f"answered {resp.status}")
            data = await resp.json(content_type=None)  # iTunes says text/javascript
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise SourceFailed(f"{type(exc).__name__}: {str(exc)[:80]}") from exc
    if not isinstance(data, dict):
        raise SourceFailed("not a JSON object")
    return data


def _retry_after(headers: Mapping[str, str]) -> float:
    try:
        return min(3_600.0, max(1.0, float(headers.get("Retry-After", 60))))
    except (TypeError, ValueError):
        return 60.0


def is_direct(track: Track, choice: Choice) -> bool:
    """Whether a linked track opens the track itself on ``choice`` (for "ask": one page for every
    platform), not a search."""
    if choice == "ask":
        return not track.choices
    artist = track.artists[0] if track.artists else ""
    return track.url != search_link(choice, artist, track.title)


def with_links(track: Track, found: Found | None, choice: Choice) -> Track:
    """The track with its URL on the listener's platform and the preview, if any."""
    where = listen(track, found, choice)
    return replace(
        track, url=where.url, preview_url=where.preview or track.preview_url, choices=where.every_platform
    )
