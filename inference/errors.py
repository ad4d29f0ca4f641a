"""Typed, user-presentable errors of the emotion engine (importable without torch)."""

from __future__ import annotations

from typing import ClassVar


class MoodringError(Exception):
    """Base of every error moodring reports to a user; ``code`` is stable across the job contract."""

    code: ClassVar[str] = "internal"


class ImageError(MoodringError):
    """The upload could not be used as a photo."""


class BadImage(ImageError):
    """Not a decodable image: empty, truncated, corrupt or an unsupported format."""

    code = "bad_image"


class ImageTooLarge(ImageError):
    """The file or its pixel dimensions exceed the configured caps."""

    code = "too_large"


class NoFaceFound(MoodringError):
    """The photo decoded fine but no face was detected in it."""

    code = "no_face"


class ModelError(MoodringError):
    """The model directory or its manifest is missing or inconsistent."""

    code = "internal"


# All user-facing wording for these codes lives here; the bot and the CLI render it.
USER_MESSAGES: dict[str, str] = {
    "bad_image": "That file isn't a photo I can read. Try a JPEG, PNG, WebP, GIF or HEIC selfie.",
    "too_large": "That photo is too large. Please send one under the size limit.",
    "no_face": "I couldn't find a face in that photo. Try a well-lit, front-facing selfie.",
    "timeout": "Reading your mood took too long. Please try again in a moment.",
    "busy": "I'm reading a lot of faces right now. Please try again in a minute.",
    "internal": "Something went wrong on my side while reading that photo.",
}


def user_message(code: str) -> str:
    """Return the wording shown to users for an error code."""
    return USER_MESSAGES.get(code, USER_MESSAGES["internal"])
