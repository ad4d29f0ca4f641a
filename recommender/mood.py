"""The mood model: emotions and probability vectors as points in valence-arousal space.

The mapping lives in ``recommender/data/moods.json`` and is validated when loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Strategy = Literal["match", "lift", "calm"]
STRATEGIES: tuple[Strategy, ...] = ("match", "lift", "calm")


class MoodMapError(ValueError):
    """The mood mapping file is missing or invalid."""


@dataclass(frozen=True, slots=True)
class MoodPoint:
    """A point on Russell's circumplex, both axes in [0, 1] (Spotify's valence/energy scale)."""

    valence: float
    arousal: float

    def distance(self, other: MoodPoint) -> float:
        return float(((self.valence - other.valence) ** 2 + (self.arousal - other.arousal) ** 2) ** 0.5)


class _Point(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    valence: float = Field(ge=0, le=1)
    arousal: float = Field(ge=0, le=1)


class _EmotionEntry(_Point):
    default_strategy: Strategy


class _StrategyEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    description: str
    target: _Point | None


class MoodMap(BaseModel):
    """Schema of ``moods.json``: emotions placed on the circumplex, every strategy defined.

    Emotions are plain names: which classes a deployment needs is the model's business, checked
    by :meth:`require` in the composition root (the recommender imports nothing of inference).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: Literal[1]
    source: str
    emotions: dict[str, _EmotionEntry] = Field(min_length=1)
    strategies: dict[Strategy, _StrategyEntry]

    @model_validator(mode="after")
    def _complete(self) -> MoodMap:
        if set(self.strategies) != set(STRATEGIES):
            raise ValueError(f"strategies must be exactly {list(STRATEGIES)}")
        if self.strategies["match"].target is not None:
            raise ValueError("'match' has no target")
        return self

    def require(self, names: Iterable[str]) -> MoodMap:
        """Check every class a model can answer has a place here; raise :class:`MoodMapError` if not."""
        missing = sorted(set(names) - set(self.emotions))
        if missing:
            raise MoodMapError(f"mood map has no place for the model's classes {missing}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.emotions)

    def _entry(self, emotion: str) -> _EmotionEntry:
        try:
            return self.emotions[str(emotion)]
        except KeyError:
            raise MoodMapError(f"no place for emotion {emotion!r} in the mood map") from None

    def point(self, emotion: str) -> MoodPoint:
        e = self._entry(emotion)
        return MoodPoint(e.valence, e.arousal)

    def nearest(self, target: MoodPoint) -> str:
        """The emotion whose point is closest to ``target``."""
        return min(self.emotions, key=lambda e: self.point(e).distance(target))

    def point_for(self, probs: Mapping[str, float]) -> MoodPoint:
        """Probability-weighted mean of the emotions' points (a full vector, not only the top label)."""
        total = sum(max(0.0, p) for p in probs.values()) or 1.0
        v = sum(self._entry(k).valence * max(0.0, p) for k, p in probs.items()) / total
        a = sum(self._entry(k).arousal * max(0.0, p) for k, p in probs.items()) / total
        return MoodPoint(v, a)

    def default_strategy(self, emotion: str) -> Strategy:
        return self._entry(emotion).default_strategy

    def path(self, start: MoodPoint, strategy: Strategy, n: int) -> list[MoodPoint]:
        """Targets for positions 1..n: constant for ``match``; a straight walk to the target otherwise.

        The walk starts at the current mood and reaches the strategy's target at the last
        position (iso principle: meet the listener where they are, then move).
        """
        target = self.strategies[strategy].target
        if target is None or n <= 1:
            return [start] * n
        out = []
        for i in range(n):
            t = i / (n - 1)
            out.append(
                MoodPoint(
                    start.valence + (target.valence - start.valence) * t,
                    start.arousal + (target.arousal - start.arousal) * t,
                )
            )
        return out


def load_mood_map(path: Path | None = None) -> MoodMap:
    """Load and validate the mood map (default: the one shipped in the package)."""
    source = path or Path(str(resources.files("recommender") / "data" / "moods.json"))
    try:
        return MoodMap.model_validate(json.loads(source.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise MoodMapError(f"mood map {source} not found") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise MoodMapError(f"invalid mood map {source}: {' '.join(first[:3])}") from exc


BlendMethod = Literal["mean", "least_misery"]


def blend(
    points: Sequence[MoodPoint], weights: Sequence[float] | None = None, method: BlendMethod = "mean"
) -> MoodPoint:
    """One target for a group.

    ``mean``: the weighted centroid (everyone counts in proportion to their weight).
    ``least_misery``: the point whose distance to the *farthest* member is smallest
    (grid search on a 0.02 grid), so nobody is left far from the music.
    """
    if not points:
        raise ValueError("blend of no moods")
    w = list(weights) if weights is not None else [1.0] * len(points)
    if method == "mean":
        total = sum(w) or 1.0
        return MoodPoint(
            sum(p.valence * x for p, x in zip(points, w, strict=True)) / total,
            sum(p.arousal * x for p, x in zip(points, w, strict=True)) / total,
        )
    best, best_cost = points[0], float("inf")
    steps = [i / 50 for i in range(51)]
    for v in steps:
        for a in steps:
            cand = MoodPoint(v, a)
            cost = max(cand.distance(p) for p in points)
            if cost < best_cost - 1e-12:
                best, best_cost = cand, cost
    return best
