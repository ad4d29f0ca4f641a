"""The built-in offline catalog (``recommender/data/catalog.csv``): always on, asked last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.catalogs import Catalog, load_imported, load_offline_catalog

NAME = "offline"
PRIORITY = 100


class OfflineSettings(BaseSettings):
    """Optionally a catalog imported with ``moodring catalog import`` instead of the built-in one."""

    model_config = SettingsConfigDict(env_prefix="MOODRING_CATALOG_", env_file=".env", extra="ignore")

    file: Path | None = Field(default=None, description="an imported catalog CSV; default: built-in")


Settings = OfflineSettings


def build(settings: OfflineSettings, redis: Any, redis_url: str) -> Catalog | None:
    return load_imported(settings.file) if settings.file else load_offline_catalog()
