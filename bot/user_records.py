"""What moodring keeps per user, and how it is named: the key names, the entry types, the
consent errors. No Redis calls here (:mod:`bot.store` makes them)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.texts import KEPT
from inference.api.connect import as_text
from inference.api.errors import MoodringError

DAY = 86_400
BASELINE_PHOTOS = 5  # calm readings averaged into a user's baseline, at most
# Every key a user can have, by name: the keys of bot.texts.KEPT, the table /mood privacy reads,
# so forget deletes what users are told is kept (bot.sessions keeps the "sessions" index, the
# recommender's history "recs"; "contribute" and "labels" are inference.api.community's).
USER_KEYS = tuple(KEPT)
CONTRIBUTE_VERSION = 1  # bump when what contributing means changes: everyone is asked again


class NoConsent(MoodringError):
    """The user has not (or no longer) agreed: nothing of theirs may be written."""

    code = "forgotten"


class ReadingGone(MoodringError):
    """The history entry a button names is no longer stored (trimmed, or forgotten)."""

    code = "reading_gone"


def user_prefix(user_hash: str) -> str:
    return f"moodring:user:{{{user_hash}}}"


@dataclass(frozen=True, slots=True)
class MoodEntry:
    at: float
    emotion: str
    confidence: float
    probs: dict[str, float]
    corrected: str | None = None
    baseline: bool = False  # read relative to the user's calm face
    raw: dict[str, float] | None = None  # the model's own probabilities when something changed them
    contributing: bool = False  # recorded while the user contributed labels (its label may be learnt from)
    asked: bool = False  # the reply asked "Did I get it right?" (a random share of contributors' readings)
    features: str = ""  # the face's projected features, kept only while contributing


@dataclass(frozen=True, slots=True)
class Recorded:
    """A reading just stored: its id, and whether its reply asks "Did I get it right?"."""

    entry_id: str
    asked: bool = False
    contributing: bool = False


@dataclass(frozen=True, slots=True)
class Labelled:
    """What a label under a reading did: the user's own prior changed, a contribution stored."""

    label: str | None
    kind: str
    contributed: bool


def summarize(entries: Sequence[MoodEntry], days: int) -> dict[str, Any]:
    """Counts per emotion (a correction counts as what the user said) and the most frequent one."""
    counts = Counter(e.corrected or e.emotion for e in entries)
    top = counts.most_common(1)[0][0] if counts else None
    return {"days": days, "entries": len(entries), "counts": dict(counts), "most_frequent": top}


def entry_from_fields(entry_id: str, f: Any, corrections: Mapping[str, str]) -> MoodEntry:
    """A history stream entry (its id and fields) as a :class:`MoodEntry`."""
    return MoodEntry(
        at=int(entry_id.split("-")[0]) / 1000,
        emotion=as_text(f[b"emotion"]),
        confidence=float(f[b"confidence"]),
        probs=json.loads(f[b"probs"]),
        corrected=corrections.get(entry_id),
        baseline=f.get(b"baseline") == b"1",
        raw=json.loads(f[b"raw"]) if b"raw" in f else None,
        contributing=f.get(b"c") == b"1",
        asked=f.get(b"ask") == b"1",
        features=as_text(f[b"f"]) if b"f" in f else "",
    )
