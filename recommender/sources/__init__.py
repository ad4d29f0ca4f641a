"""Music sources. Each module in this package is one source and is found by itself:

``NAME`` (str), ``PRIORITY`` (lower is asked first), ``Settings`` (a pydantic-settings class, its
own environment block) and ``build(settings, redis, redis_url)``, which returns a
:class:`~recommender.catalogs.Catalog` (picks for a mood: offline, Spotify), a
:class:`~recommender.links.LinkSource` (a pick's exact track and preview: Deezer, iTunes,
Odesli) or None (not configured). A new source is one new module here; nothing else changes.
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
from recommender.links import LinkResolver, LinkSource

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


def _built(settings: Mapping[str, BaseSettings], redis: Any, redis_url: str) -> list[Any]:
    built = []
    for s in sources():
        made = s.build(settings.get(s.name) or s.settings_cls(), redis, redis_url)
        if made is not None:
            built.append(made)
    return built


def build_catalogs(settings: Mapping[str, BaseSettings], redis: Any, redis_url: str) -> list[Catalog]:
    """The configured sources' catalogs (picks for a mood), first asked first; sources without
    settings use defaults."""
    catalogs = [c for c in _built(settings, redis, redis_url) if hasattr(c, "candidates")]
    log.info("music sources: %s", ", ".join(c.name for c in catalogs))
    return catalogs


def one_off_link_resolver() -> LinkResolver:
    """The link sources configured in the environment, for a command line lookup (no cache): the
    exact track on the chosen platform where the network answers within 3 s, else a search."""
    return LinkResolver(build_link_sources(load_source_settings(lambda cls: cls()), None, ""), None, 3.0)


def build_link_sources(settings: Mapping[str, BaseSettings], redis: Any, redis_url: str) -> list[LinkSource]:
    """The configured link sources (a pick's exact track on each platform, its preview)."""
    found = [s for s in _built(settings, redis, redis_url) if hasattr(s, "find")]
    log.info("link sources: %s", ", ".join(s.name for s in found) or "none (search links only)")
    return found
