"""Apple's iTunes Search API (no key): an offline pick's exact Apple Music track and its
30-second preview. Terms: https://performance-partners.apple.com/search-api (links and previews
for promoting the content; about 20 calls a minute). moodring asks at most
``MOODRING_ITUNES_PER_MINUTE`` across processes and caches the answers a week.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from recommender.links import Found, KeylessSource, LinkSettings, SourceFailed, get_json

NAME = "itunes"
PRIORITY = 20  # before Deezer: its preview URLs do not expire


class ItunesSettings(LinkSettings):
    model_config = SettingsConfigDict(env_prefix="MOODRING_ITUNES_", env_file=".env", extra="ignore")

    api_base: str = "https://itunes.apple.com"
    country: str = Field(default="US", min_length=2, max_length=2, description="the store the links open")
    per_minute: int = Field(default=20, ge=1)


Settings = ItunesSettings


class ItunesLinks(KeylessSource):
    name = NAME

    def __init__(self, settings: ItunesSettings) -> None:
        super().__init__(settings)
        self.country = settings.country

    async def find(self, http: Any, artist: str, title: str, known: Mapping[str, str]) -> Found | None:
        params = {
            "term": f"{artist} {title}".strip(),
            "entity": "song",
            "limit": "3",
            "country": self.country,
        }
        data = await get_json(http, f"{self.base}/search", params, NAME)
        results = data.get("results")
        if not isinstance(results, list):
            raise SourceFailed("an answer without results")
        for hit in results:
            if not isinstance(hit, dict) or hit.get("kind") != "song":
                continue
            if artist and str(hit.get("artistName", "")).lower() != artist.lower():
                continue  # another artist's song of that name is not the pick
            url = hit.get("trackViewUrl")
            if isinstance(url, str) and url.startswith("https://music.apple.com/"):
                preview = hit.get("previewUrl")
                ok = isinstance(preview, str) and preview.startswith("https://")
                return Found({"apple_music": url.split("&uo=")[0]}, preview if ok else None)
        return None


def build(settings: ItunesSettings, redis: Any, redis_url: str) -> ItunesLinks | None:
    return ItunesLinks(settings) if settings.enabled else None
