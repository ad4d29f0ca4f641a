"""Track values and Spotify links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

TRACK_ID = re.compile(r"^[A-Za-z0-9]{22}$")


def search_url(artist: str, title: str) -> str:
    """A Spotify link that always works without knowing the track id."""
    return "https://open.spotify.com/search/" + quote(f"{artist} {title}", safe="")


def track_url(track_id: str) -> str:
    if not TRACK_ID.match(track_id):
        raise ValueError(f"not a Spotify track id: {track_id!r}")
    return f"https://open.spotify.com/track/{track_id}"


@dataclass(frozen=True, slots=True)
class Track:
    """A recommendable track; audio features are None when unknown."""

    title: str
    artists: tuple[str, ...]
    url: str
    source: str
    valence: float | None = None
    energy: float | None = None
    tempo: float | None = None
    genre: str | None = None
    year: int | None = None
    preview_url: str | None = None
    album_art: str | None = None
    # "ask every time" without one page for every platform: (platform, link) each, the listener picks
    choices: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """Identity for de-duplication and history: the URL's id, else artist + title."""
        if "/track/" in self.url:
            return self.url.rsplit("/", 1)[-1]
        return f"{self.artists[0].lower()}|{self.title.lower()}"

    @property
    def main_artist(self) -> str:
        return self.artists[0].lower() if self.artists else ""
