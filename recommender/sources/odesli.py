"""Odesli (song.link) without a key: one known link of a track (Deezer's, Apple's, Spotify's) to
the same track on every platform, and the song.link page that lists them. Terms:
https://odesli.co (10 requests a minute without a key; ask developers@song.link for one).
moodring asks at most ``MOODRING_ODESLI_PER_MINUTE`` across processes and caches a week.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from recommender.links import Found, KeylessSource, LinkSettings, SourceFailed, get_json

NAME = "odesli"
PRIORITY = 40
# Odesli's platform names -> moodring's
PLATFORMS = {
    "spotify": "spotify",
    "youtubeMusic": "youtube_music",
    "appleMusic": "apple_music",
    "deezer": "deezer",
    "tidal": "tidal",
}


class OdesliSettings(LinkSettings):
    model_config = SettingsConfigDict(env_prefix="MOODRING_ODESLI_", env_file=".env", extra="ignore")

    api_base: str = "https://api.song.link/v1-alpha.1"
    api_key: SecretStr | None = Field(default=None, description="optional: a higher limit than 10 a minute")
    country: str = Field(default="US", min_length=2, max_length=2)
    per_minute: int = Field(default=10, ge=1)


Settings = OdesliSettings


class OdesliLinks(KeylessSource):
    name = NAME
    needs_link = True

    def __init__(self, settings: OdesliSettings) -> None:
        super().__init__(settings)
        self.key = settings.api_key.get_secret_value() if settings.api_key else None
        self.country = settings.country

    async def find(self, http: Any, artist: str, title: str, known: Mapping[str, str]) -> Found | None:
        start = next((known[p] for p in ("deezer", "apple_music", "spotify") if p in known), None)
        if start is None:
            return None
        params = {"url": start, "userCountry": self.country}
        if self.key:
            params["key"] = self.key
        data = await get_json(http, f"{self.base}/links", params, NAME, missing_ok=True)
        if not data:
            return None  # Odesli doesn't know the track
        by_platform = data.get("linksByPlatform")
        if not isinstance(by_platform, dict):
            raise SourceFailed("an answer without linksByPlatform")
        links = {}
        for theirs, ours in PLATFORMS.items():
            entry = by_platform.get(theirs)
            url = entry.get("url") if isinstance(entry, dict) else None
            if isinstance(url, str) and url.startswith("https://"):
                links[ours] = url
        page = data.get("pageUrl")
        return Found(links, None, page if isinstance(page, str) and page.startswith("https://") else None)


def build(settings: OdesliSettings, redis: Any, redis_url: str) -> OdesliLinks | None:
    return OdesliLinks(settings) if settings.enabled else None
