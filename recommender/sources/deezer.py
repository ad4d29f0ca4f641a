"""Deezer's public search API (no key): an offline pick's exact Deezer track and its 30-second
preview. Terms: https://developers.deezer.com/termsofuse (attribution, no storing of the audio;
moodring links to Deezer and caches only the link and the preview URL). Published limit: 50
requests per 5 s per IP; moodring asks at most ``MOODRING_DEEZER_PER_MINUTE`` across processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from recommender.links import Found, KeylessSource, LinkSettings, SourceFailed, get_json

NAME = "deezer"
PRIORITY = 30


class DeezerSettings(LinkSettings):
    model_config = SettingsConfigDict(env_prefix="MOODRING_DEEZER_", env_file=".env", extra="ignore")

    api_base: str = "https://api.deezer.com"
    per_minute: int = Field(default=300, ge=1)


Settings = DeezerSettings


class DeezerLinks(KeylessSource):
    name = NAME

    async def find(self, http: Any, artist: str, title: str, known: Mapping[str, str]) -> Found | None:
        query = f'artist:"{artist}" track:"{title}"' if artist else title
        data = await get_json(http, f"{self.base}/search", {"q": query, "limit": "1"}, NAME)
        if isinstance(data.get("error"), dict):  # Deezer answers errors with 200 and a body
            error = data["error"]
            if error.get("code") == 4:  # "Quota limit exceeded": back off like a 429
                raise SourceFailed("quota exceeded", retry_after_s=5.0)
            raise SourceFailed(f"error {error.get('code')}: {str(error.get('message'))[:80]}")
        hits = data.get("data")
        if not isinstance(hits, list):
            raise SourceFailed("an answer without data")
        for hit in hits:
            link = hit.get("link") if isinstance(hit, dict) else None
            if isinstance(link, str) and link.startswith("https://www.deezer.com/"):
                preview = hit.get("preview")
                ok = isinstance(preview, str) and preview.startswith("https://")
                return Found({"deezer": link}, preview if ok else None)
        return None


def build(settings: DeezerSettings, redis: Any, redis_url: str) -> DeezerLinks | None:
    return DeezerLinks(settings) if settings.enabled else None
