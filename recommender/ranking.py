"""Rank candidates along a strategy's target path: distance, artist diversity, novelty, seeded."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from recommender.mood import MoodPoint, Strategy
from recommender.tracks import Track

TEMPO_WEIGHT = 0.25  # tempo is a weaker cue than valence/energy


@dataclass(frozen=True, slots=True)
class Recommendation:
    track: Track
    target: MoodPoint
    distance: float
    reason: str


def tempo_unit(bpm: float) -> float:
    """Map 60..180 BPM onto 0..1 so it can be compared with arousal."""
    return min(1.0, max(0.0, (bpm - 60.0) / 120.0))


def distance(track: Track, target: MoodPoint) -> float:
    assert track.valence is not None and track.energy is not None
    d2 = (track.valence - target.valence) ** 2 + (track.energy - target.arousal) ** 2
    if track.tempo is not None:
        d2 += TEMPO_WEIGHT * (tempo_unit(track.tempo) - target.arousal) ** 2
    return float(d2**0.5)


def describe(track: Track, strategy: Strategy, emotion: str) -> str:
    """One line such as ``"slow, gentle, dark → matches sad"``."""
    words = []
    if track.tempo is not None:
        words.append("slow" if track.tempo < 90 else "mid-tempo" if track.tempo < 120 else "fast")
    if track.energy is not None:
        words.append("gentle" if track.energy < 0.4 else "steady" if track.energy < 0.7 else "driving")
    if track.valence is not None:
        words.append("dark" if track.valence < 0.3 else "bittersweet" if track.valence < 0.55 else "bright")
    verb = {"match": "matches", "lift": "lifts from", "calm": "calms"}[strategy]
    return f"{', '.join(words)} → {verb} {emotion}"


def rank(
    candidates: Sequence[Track],
    path: Sequence[MoodPoint],
    strategy: Strategy,
    emotion: str,
    *,
    exclude: Collection[str] = (),
    seed: int = 0,
    jitter: float = 0.03,
) -> list[Recommendation]:
    """Pick one track per path position, greedily, never repeating an artist or an excluded key.

    A small seeded jitter varies equally good picks between seeds while staying
    deterministic for a given seed. For ``lift`` the final list is ordered by
    valence (never steps back down), for ``calm`` by falling energy.
    """
    rng = random.Random(seed)
    noise = {t.key: rng.random() * jitter for t in candidates}
    used_artists: set[str] = set()
    used_keys: set[str] = set(exclude)
    picks: list[Recommendation] = []
    usable = [t for t in candidates if t.valence is not None and t.energy is not None]
    for target in path:
        best: tuple[float, Track] | None = None
        for t in usable:
            if t.key in used_keys or t.main_artist in used_artists:
                continue
            score = distance(t, target) + noise[t.key]
            if best is None or score < best[0]:
                best = (score, t)
        if best is None:
            break
        track = best[1]
        used_keys.add(track.key)
        used_artists.add(track.main_artist)
        picks.append(
            Recommendation(track, target, distance(track, target), describe(track, strategy, emotion))
        )
    if strategy in ("lift", "calm"):
        # lift never steps back down in valence; calm never steps back up in energy
        if strategy == "lift":
            ordered = sorted((p.track for p in picks), key=lambda t: t.valence or 0.0)
        else:
            ordered = sorted((p.track for p in picks), key=lambda t: -(t.energy or 0.0))
        picks = [
            Recommendation(t, p.target, distance(t, p.target), describe(t, strategy, emotion))
            for t, p in zip(ordered, picks, strict=True)
        ]
    return picks
