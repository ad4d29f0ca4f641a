"""Spotify credentials (optional): spotipy's own variable names, no prefix."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
