"""The seven FER2013 emotions; importable without torch."""

from __future__ import annotations

from enum import StrEnum


class Emotion(StrEnum):
    """A FER2013 emotion class, in ImageFolder (alphabetical) order."""

    ANGRY = "angry"
    DISGUST = "disgust"
    FEAR = "fear"
    HAPPY = "happy"
    NEUTRAL = "neutral"
    SAD = "sad"
    SURPRISE = "surprise"


EMOTIONS: tuple[Emotion, ...] = tuple(Emotion)
