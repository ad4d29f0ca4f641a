"""Where people listen: the platforms a user can choose, and a search link on each.

A search link always works without knowing the track; the link sources in
:mod:`recommender.sources` turn it into the exact track where they can (:mod:`recommender.links`).
"""

from __future__ import annotations

from typing import Literal, get_args
from urllib.parse import quote, quote_plus

Platform = Literal["spotify", "youtube_music", "apple_music", "deezer", "tidal"]
Choice = Literal["spotify", "youtube_music", "apple_music", "deezer", "tidal", "ask"]
PLATFORMS: tuple[Platform, ...] = get_args(Platform)
CHOICES: tuple[Choice, ...] = get_args(Choice)
ASK: Choice = "ask"  # every platform, the listener picks (song.link's page, or one search link each)
DEFAULT: Choice = "spotify"  # what a user who never chose gets (moodring's links before platforms)

LABELS: dict[str, str] = {
    "spotify": "Spotify",
    "youtube_music": "YouTube Music",
    "apple_music": "Apple Music",
    "deezer": "Deezer",
    "tidal": "TIDAL",
    "ask": "ask every time",
}


def search_link(platform: Platform, artist: str, title: str) -> str:
    """A search for ``artist title`` on ``platform`` (its public web player)."""
    q = f"{artist} {title}".strip()
    if platform == "spotify":
        return "https://open.spotify.com/search/" + quote(q, safe="")
    if platform == "youtube_music":
        return "https://music.youtube.com/search?q=" + quote_plus(q)
    if platform == "apple_music":
        return "https://music.apple.com/us/search?term=" + quote_plus(q)
    if platform == "deezer":
        return "https://www.deezer.com/search/" + quote(q, safe="")
    return "https://listen.tidal.com/search?q=" + quote_plus(q)
