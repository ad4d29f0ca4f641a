"""Music sources. Each module in this package is one source and is found by itself:

``NAME`` (str), ``PRIORITY`` (lower is asked first), ``Settings`` (a pydantic-settings class, its
own environment block) and ``build(settings, redis, redis_url) -> Catalog | None`` (None: not
configured). A new source (Deezer, say) is one new module here; nothing else changes.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings

from recommender.catalogs import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    priority: int
    settings_cls: type[BaseSettings]
    build: Callable[[Any, Any, str], Catalog | None]


def sources() -> list[Source]:
    """Every source module of this package, in the order they are asked."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Source(mod.NAME, int(mod.PRIORITY), mod.Settings, mod.build))
    return sorted(found, key=lambda s: (s.priority, s.name))


def load_source_settings(load: Callable[[type[BaseSettings]], BaseSettings]) -> dict[str, BaseSettings]:
    """Each source's settings, built with ``load`` (the composition root's settings loader)."""
    return {s.name: load(s.settings_cls) for s in sources()}


def build_catalogs(settings: Mapping[str, BaseSettings], redis: Any, redis_url: str) -> list[Catalog]:
    """The configured sources' catalogs, first asked first; sources without settings use defaults."""
    catalogs = []
    for s in sources():
        catalog = s.build(settings.get(s.name) or s.settings_cls(), redis, redis_url)
        if catalog is not None:
            catalogs.append(catalog)
    log.info("music sources: %s", ", ".join(c.name for c in catalogs))
    return catalogs
