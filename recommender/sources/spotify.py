"""Spotify as a catalog: search only (the endpoints closed in Nov 2024 are never called).

spotipy is blocking, so every call runs in ``asyncio.to_thread``. Results are cached in
Redis per query; spotipy's client-credentials token lives in Redis too (its own
``RedisCacheHandler``), so all bot processes share one token. A 429 sets a shared
back-off key for ``Retry-After`` seconds: while it exists no process calls Spotify and
the recommender answers from the next catalog at once, so nobody waits on the limit.
Timeouts, 5xx and auth failures raise :class:`CatalogUnavailable` the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import asdict
from importlib import resources
from typing import Any

import redis as redis_sync
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from recommender.catalogs import Catalog, CatalogUnavailable
from recommender.mood import MoodPoint
from recommender.tracks import TRACK_ID, Track, track_url

log = logging.getLogger(__name__)

NAME = "spotify"
PRIORITY = 10  # asked first; the offline catalog backs it up


class SpotifySettings(BaseSettings):
    """Client-credentials for Spotify search; without them the offline catalog is used."""

    model_config = SettingsConfigDict(env_prefix="SPOTIPY_", env_file=".env", extra="ignore")

    client_id: str | None = None
    client_secret: SecretStr | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    market: str = "US"
    cache_ttl_s: int = Field(default=86_400, ge=60, description="search results kept in Redis")
    api_base: str | None = Field(default=None, description="Web API base URL (a proxy, or the tests' fake)")
    token_url: str | None = Field(default=None, description="token endpoint override (same use)")

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


Settings = SpotifySettings

BACKOFF_KEY = "moodring:spotify:backoff"
TOKEN_KEY = "moodring:spotify:token"
SEARCH_LIMIT = 10  # development-mode apps get at most 10 results per search (2026)


class RateLimited(CatalogUnavailable):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"Spotify rate limit, retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class Anchor(BaseModel):
    valence: float = Field(ge=0, le=1)
    arousal: float = Field(ge=0, le=1)
    queries: list[str] = Field(min_length=1)


class QueryPlan(BaseModel):
    schema_version: int = Field(ge=1, le=1)
    anchors: list[Anchor] = Field(min_length=2)

    def nearest(self, target: MoodPoint, k: int = 2) -> list[Anchor]:
        return sorted(
            self.anchors,
            key=lambda a: (a.valence - target.valence) ** 2 + (a.arousal - target.arousal) ** 2,
        )[:k]


def load_query_plan() -> QueryPlan:
    text = (resources.files("recommender") / "data" / "spotify_queries.json").read_text()
    return QueryPlan.model_validate_json(text)


def track_from_item(item: dict[str, Any], anchor: Anchor) -> Track | None:
    """Convert one search item into our own value (spotipy dicts stop here)."""
    track_id = item.get("id") or ""
    if not TRACK_ID.match(track_id) or not item.get("name"):
        return None
    album = item.get("album") or {}
    images = album.get("images") or []
    year = str(album.get("release_date") or "")[:4]
    return Track(
        title=item["name"],
        artists=tuple(a["name"] for a in item.get("artists", []) if a.get("name")) or ("Unknown",),
        url=track_url(track_id),
        source="spotify",
        valence=anchor.valence,
        energy=anchor.arousal,
        preview_url=item.get("preview_url"),
        album_art=images[0]["url"] if images else None,
        year=int(year) if year.isdigit() else None,
    )


class SpotifyCatalog:
    """Search-based catalog; ``client`` is a ``spotipy.Spotify`` (injectable for tests)."""

    name = "spotify"

    def __init__(
        self,
        client: Any,
        redis: Redis,
        settings: SpotifySettings,
        plan: QueryPlan | None = None,
    ) -> None:
        self._client = client
        self._redis = redis
        self._settings = settings
        self._plan = plan or load_query_plan()
        self._ttl = settings.cache_ttl_s

    async def candidates(self, target: MoodPoint, limit: int) -> list[Track]:
        backoff = await self._redis.pttl(BACKOFF_KEY)
        if backoff > 0:
            raise CatalogUnavailable(f"rate limited for another {backoff / 1000:.1f} s")
        tracks: dict[str, Track] = {}
        for anchor in self._plan.nearest(target):
            for query in anchor.queries:
                for track in await self._search(query, anchor):
                    tracks.setdefault(track.key, track)
                if len(tracks) >= limit:
                    return list(tracks.values())[:limit]
        return list(tracks.values())

    async def probe(self) -> int:
        """One uncached test search (``moodring doctor``): how many tracks it found; raises
        :class:`CatalogUnavailable` when the credentials or the service fail."""
        return len(await asyncio.to_thread(self._search_blocking, "happy"))

    async def _search(self, query: str, anchor: Anchor) -> list[Track]:
        key = "moodring:spotify:q:" + hashlib.sha1(f"{self._settings.market}|{query}".encode()).hexdigest()
        cached = await self._redis.get(key)
        if cached is not None:
            return [Track(**{**t, "artists": tuple(t["artists"])}) for t in json.loads(cached)]
        try:
            items = await asyncio.to_thread(self._search_blocking, query)
        except RateLimited as exc:
            # Shared by every process: nobody calls Spotify until Retry-After has passed.
            await self._redis.set(BACKOFF_KEY, "1", px=max(1, int(exc.retry_after_s * 1000)))
            raise
        tracks = [t for t in (track_from_item(i, anchor) for i in items) if t is not None]
        await self._redis.set(key, json.dumps([asdict(t) for t in tracks]), ex=self._ttl)
        return tracks

    def _search_blocking(self, query: str) -> list[dict[str, Any]]:
        from requests import RequestException
        from spotipy import SpotifyException
        from spotipy.oauth2 import SpotifyOauthError

        for attempt in range(2):
            try:
                result = self._client.search(
                    q=query, type="track", limit=SEARCH_LIMIT, market=self._settings.market
                )
                return list(((result or {}).get("tracks") or {}).get("items") or [])
            except SpotifyException as exc:
                if exc.http_status == 429:
                    raise RateLimited(_retry_after(exc.headers)) from exc
                if exc.http_status == 401 and attempt == 0:
                    self._client.auth_manager.cache_handler.save_token_to_cache({})  # drop the stale token
                    continue
                raise CatalogUnavailable(f"Spotify answered {exc.http_status}") from exc
            except (RequestException, SpotifyOauthError) as exc:  # timeouts, refused, bad credentials
                raise CatalogUnavailable(f"Spotify unreachable: {type(exc).__name__}") from exc
        raise CatalogUnavailable("Spotify rejected a fresh token")


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float((headers or {}).get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


def build_spotify_catalog(settings: SpotifySettings, redis: Redis, redis_url: str) -> SpotifyCatalog:
    """A client-credentials spotipy client with its token in Redis, no internal retries."""
    import spotipy
    from spotipy.cache_handler import RedisCacheHandler
    from spotipy.oauth2 import SpotifyClientCredentials

    assert settings.client_id and settings.client_secret
    from redis.asyncio.cluster import RedisCluster

    # the blocking twin of the bot's client: a cluster client when the bot runs on a cluster
    blocking = redis_sync.RedisCluster if isinstance(redis, RedisCluster) else redis_sync.Redis
    token_cache = RedisCacheHandler(blocking.from_url(redis_url), key=TOKEN_KEY)
    auth = SpotifyClientCredentials(
        settings.client_id,
        settings.client_secret.get_secret_value(),
        cache_handler=token_cache,
        requests_timeout=settings.timeout_s,
    )
    if settings.token_url:
        auth.OAUTH_TOKEN_URL = settings.token_url
    client = spotipy.Spotify(
        auth_manager=auth,
        requests_timeout=settings.timeout_s,
        retries=0,
        status_retries=0,
        status_forcelist=(),
        backoff_factor=0,
    )
    if settings.api_base:
        client.prefix = settings.api_base.rstrip("/") + "/"
    return SpotifyCatalog(client, redis, settings)


def build(settings: SpotifySettings, redis: Redis, redis_url: str) -> Catalog | None:
    """The Spotify catalog when credentials are set, else None (the source is off)."""
    if not settings.configured:
        log.warning(
            "no SPOTIPY_CLIENT_ID/SECRET: Spotify search is off, recommending from the offline catalog"
        )
        return None
    return build_spotify_catalog(settings, redis, redis_url)
