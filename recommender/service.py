"""The recommender facade: emotion (or probabilities) + strategy → ranked tracks, with history."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from recommender.catalogs import Catalog, CatalogUnavailable
from recommender.links import LinkResolver, is_direct, with_links
from recommender.mood import MoodMap, MoodPoint, Strategy
from recommender.platforms import Choice
from recommender.ranking import Recommendation, rank
from recommender.tracks import Track

log = logging.getLogger(__name__)


class History(Protocol):
    """Recently recommended track keys per user (novelty)."""

    async def recent(self, user: str) -> list[str]: ...

    async def add(self, user: str, keys: Sequence[str]) -> None: ...


class MemoryHistory:
    """Process-local history for the CLI and tests (the bot uses ``bot.store.BotHistory``)."""

    def __init__(self, size: int = 30) -> None:
        self.size = size
        self._data: dict[str, deque[str]] = {}

    async def recent(self, user: str) -> list[str]:
        return list(self._data.get(user, ()))

    async def add(self, user: str, keys: Sequence[str]) -> None:
        self._data.setdefault(user, deque(maxlen=self.size)).extend(keys)


class Recommender:
    """Turns a mood into a list of tracks from the first catalog that can serve it."""

    def __init__(
        self,
        mood_map: MoodMap,
        catalogs: Sequence[Catalog],
        history: History,
        pool_size: int = 400,
        links: LinkResolver | None = None,
    ) -> None:
        if not catalogs:
            raise ValueError("at least one catalog is required")
        self.mood_map = mood_map
        self.catalogs = list(catalogs)
        self.history = history
        self.pool_size = pool_size
        self.links = links  # None: no lookups; links are search links on the listener's platform

    async def recommend(
        self,
        emotion: str,
        *,
        probs: Mapping[str, float] | None = None,
        strategy: Strategy | None = None,
        n: int = 5,
        user: str = "anonymous",
        seed: int = 0,
        start: MoodPoint | None = None,
        platform: Choice | None = None,
    ) -> list[Recommendation]:
        """Recommend ``n`` tracks; ``probs`` (all 7 classes) refines the starting point.

        ``platform``: each track's link opens there (the exact track where a link source knows
        it, else a search there); None: the catalog's own link."""
        strategy = strategy or self.mood_map.default_strategy(emotion)
        if start is None:
            start = self.mood_map.point_for(probs) if probs else self.mood_map.point(emotion)
        path = self.mood_map.path(start, strategy, n)
        exclude = await self.history.recent(user)
        picks: list[Recommendation] = []
        for catalog in self.catalogs:
            pool: list[Track] = []
            try:
                for target in {(p.valence, p.arousal): p for p in path}.values():
                    pool.extend(await catalog.candidates(target, self.pool_size))
            except CatalogUnavailable as exc:
                log.warning("catalog %s unavailable (%s); using the next one", catalog.name, exc)
                continue
            unique = list({t.key: t for t in pool}.values())
            picks = rank(unique, path, strategy, emotion, exclude=exclude, seed=seed)
            if len(picks) >= n:
                break
            log.warning("catalog %s gave %d of %d tracks; trying the next", catalog.name, len(picks), n)
        await self.history.add(user, [p.track.key for p in picks])
        return picks if platform is None else await self.linked(picks, platform)

    async def linked(
        self, picks: Sequence[Recommendation], platform: Choice, deadline_s: float | None = None
    ) -> list[Recommendation]:
        """``picks`` with each track's link (and preview) on ``platform``, within the deadline."""
        tracks = await self.link_tracks([p.track for p in picks], platform, deadline_s)
        return [replace(p, track=t) for p, t in zip(picks, tracks, strict=True)]

    async def link_tracks(
        self, tracks: Sequence[Track], platform: Choice, deadline_s: float | None = None
    ) -> list[Track]:
        """``tracks`` with their links (and previews) on ``platform``, within the deadline."""
        found = await self.links.resolve(tracks, deadline_s, want=platform) if self.links else {}
        return [with_links(t, found.get(t.key), platform) for t in tracks]

    async def settled(
        self, picks: Sequence[Recommendation], platform: Choice, timeout_s: float | None = None
    ) -> list[Recommendation] | None:
        """``picks`` (as linked for a reply) with the links that landed after the reply's deadline;
        None when nothing changed (no lookup was left, or it found nothing more)."""
        if self.links is None or not picks:
            return None
        found = await self.links.settle([p.track for p in picks], timeout_s)
        better = []
        for pick, known in zip(picks, found, strict=True):
            now = with_links(pick.track, known, platform)
            gained = (is_direct(now, platform) and not is_direct(pick.track, platform)) or bool(
                now.preview_url and not pick.track.preview_url
            )
            better.append(replace(pick, track=now) if gained else pick)
        return better if better != list(picks) else None
