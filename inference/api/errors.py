"""Typed errors users can meet, and the one table of what each says to them (no torch).

``code`` is stable across the job contract: the worker sends it, the bot and the CLI look
its sentence up here. Bot-only situations (cooldown, a download that failed) have their
rows here too, so every user-facing error sentence lives in one table.
"""

from __future__ import annotations

from typing import ClassVar


class MoodringError(Exception):
    """Base of every error moodring reports to a user."""

    code: ClassVar[str] = "internal"


class ImageError(MoodringError):
    """The upload could not be used as a photo."""


class BadImage(ImageError):
    """Not a decodable image: empty, truncated, corrupt or an unsupported format."""

    code = "bad_image"


class ImageTooLarge(ImageError):
    """The file or its pixel dimensions exceed the configured caps."""

    code = "too_large"


class TooManyPixels(ImageTooLarge):
    """A small file whose picture is too big to decode (its width × height, not its bytes)."""

    code = "too_many_pixels"


class NoFaceFound(MoodringError):
    """The photo decoded fine but no face was detected in it."""

    code = "no_face"


class ModelError(MoodringError):
    """The model directory or its manifest is missing or inconsistent."""

    code = "internal"


class Busy(MoodringError):
    """The queue's backlog is over the cap, or this user already has a photo in flight."""

    code = "busy"


class Unavailable(MoodringError):
    """No worker has been alive lately: analysis is down (said at once, not after the deadline)."""

    code = "unavailable"


class JobTimeout(MoodringError):
    """No worker answered before the deadline."""

    code = "timeout"


class InvalidJob(MoodringError):
    """A job the contract refuses (a photo key not its own, a number that isn't finite or is out
    of range, a deadline too far out): refused where it is made, or answered so by a worker."""

    code = "invalid_job"


class JobFailed(MoodringError):
    """The worker answered with a typed error; ``code`` mirrors it."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code  # type: ignore[misc]


# code -> sentence; ``{seconds}`` and ``{max_mb}`` are filled in by user_message.
USER_MESSAGES: dict[str, str] = {
    "no_face": "I couldn't find a face in that picture. Try a well-lit photo where your face is "
    "clearly visible and not too small.",
    "bad_image": "I couldn't read that file as an image. JPEG, PNG, WebP, GIF or HEIC work.",
    "too_large": "That picture is too large for me. Try a smaller photo (under {max_mb} MB).",
    "too_many_pixels": "That picture has too many pixels for me, however small its file: try one of "
    "at most about 20 megapixels (a phone camera's photo fits).",
    "not_image": "That attachment isn't an image. Send a photo (JPEG, PNG, WebP, GIF or HEIC).",
    "no_image": "That message has no image attached.",
    "busy": "I'm very busy right now. Please try again in a minute.",
    "timeout": "That took too long, sorry. Please try again in a moment.",
    "restarted": "I restarted while reading your photo and couldn't finish it. Please try again.",
    "unavailable": "Mood reading is down right now (no analysis worker is running). Please try again later.",
    "cooldown": "Easy there: you can check again in {seconds} s.",
    "download_failed": "I couldn't download that attachment from Discord. Please try again.",
    "internal": "Something went wrong on my side. Please try again later.",
    "invalid_job": "Something went wrong on my side (a malformed request). Please try again later.",
    "forgotten_during_check": "You asked me to forget you while I was reading that photo, so I kept "
    "nothing of it. `/mood check` starts again.",
    "not_yours": "Only the person who ran this can use these buttons.",
}

# Exit status of `moodring analyze` and `moodring submit` per code (2 is a configuration error).
EXIT_STATUS: dict[str, int] = {
    "no_face": 3,
    "bad_image": 4,
    "too_large": 4,
    "too_many_pixels": 4,
    "timeout": 5,
    "unavailable": 5,
    "busy": 6,
}
EXIT_OTHER = 1


def user_message(code: str, *, seconds: float = 0, max_mb: float = 20) -> str:
    """The sentence shown to users for an error code (unknown codes read as 'internal')."""
    text = USER_MESSAGES.get(code, USER_MESSAGES["internal"])
    return text.format(seconds=max(1, round(seconds)), max_mb=round(max_mb))


def exit_status(code: str) -> int:
    return EXIT_STATUS.get(code, EXIT_OTHER)
