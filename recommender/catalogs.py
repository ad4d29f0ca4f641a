"""Catalogs behind one protocol: the built-in offline list and user-imported CSV tables."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from recommender.mood import MoodPoint
from recommender.tracks import TRACK_ID, Track, search_url, track_url

log = logging.getLogger(__name__)


class CatalogError(ValueError):
    """A catalog file is missing or unusable."""


class CatalogUnavailable(RuntimeError):
    """A catalog can't answer right now (rate limit, outage, timeout, credentials): try the next."""


class Catalog(Protocol):
    """Something that can offer candidate tracks for a mood target."""

    @property
    def name(self) -> str: ...

    async def candidates(self, target: MoodPoint, limit: int) -> list[Track]:
        """Tracks worth ranking for ``target`` (any order, at most ``limit``)."""
        ...


@dataclass(frozen=True, slots=True)
class StaticCatalog:
    """An in-memory list of tracks with known features (offline or imported)."""

    name: str
    tracks: tuple[Track, ...]

    async def candidates(self, target: MoodPoint, limit: int) -> list[Track]:
        known = [t for t in self.tracks if t.valence is not None and t.energy is not None]
        known.sort(key=lambda t: (t.valence - target.valence) ** 2 + (t.energy - target.arousal) ** 2)  # type: ignore[operator]
        return known[:limit]


OFFLINE_COLUMNS = ("title", "artist", "year", "genre", "valence", "energy", "tempo", "spotify_id")


def load_offline_catalog(path: Path | None = None) -> StaticCatalog:
    """The built-in catalog (``recommender/data/catalog.csv``), the default without credentials."""
    source = path or Path(str(resources.files("recommender") / "data" / "catalog.csv"))
    text = source.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != OFFLINE_COLUMNS:
        raise CatalogError(f"{source}: expected columns {OFFLINE_COLUMNS}")
    tracks = []
    for n, row in enumerate(rows, start=2):
        try:
            tid = row["spotify_id"].strip()
            tracks.append(
                Track(
                    title=row["title"].strip(),
                    artists=tuple(a.strip() for a in row["artist"].split(";")),
                    url=track_url(tid) if tid else search_url(row["artist"].replace(";", " "), row["title"]),
                    source="offline",
                    valence=_unit(row["valence"]),
                    energy=_unit(row["energy"]),
                    tempo=float(row["tempo"]),
                    genre=row["genre"].strip(),
                    year=int(row["year"]),
                )
            )
        except (KeyError, ValueError) as exc:
            raise CatalogError(f"{source}:{n}: {exc}") from exc
    return StaticCatalog("offline", tuple(tracks))


def _unit(value: str) -> float:
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{value} is outside [0, 1]")
    return x


@dataclass(frozen=True, slots=True)
class ImportReport:
    read: int
    kept: int
    skipped: int
    duplicates: int


IMPORT_REQUIRED = ("uri", "track", "artist", "valence", "energy", "tempo")
STORE_COLUMNS = ("uri", "track", "artist", "valence", "energy", "tempo")


def parse_feature_table(lines: Iterable[str]) -> tuple[list[Track], ImportReport]:
    """Parse the common Kaggle layout (uri, track, artist, valence, energy, tempo, ...).

    Rows with a malformed URI or out-of-range features are skipped and counted;
    duplicate URIs keep their first row.
    """
    reader = csv.DictReader(lines)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in IMPORT_REQUIRED if c not in header]
    if missing:
        raise CatalogError(f"missing columns {missing}; need {list(IMPORT_REQUIRED)}")
    reader.fieldnames = header
    seen: set[str] = set()
    tracks: list[Track] = []
    read = skipped = dups = 0
    for row in reader:
        read += 1
        try:
            uri = row["uri"].strip()
            tid = uri.rsplit(":", 1)[-1] if uri.startswith("spotify:track:") else ""
            if not TRACK_ID.match(tid):
                raise ValueError(f"bad uri {uri!r}")
            tempo = float(row["tempo"])
            if not 0 < tempo < 300:
                raise ValueError(f"tempo {tempo}")
            track = Track(
                title=row["track"].strip(),
                artists=(row["artist"].strip(),),
                url=track_url(tid),
                source="imported",
                valence=_unit(row["valence"]),
                energy=_unit(row["energy"]),
                tempo=tempo,
            )
            if not track.title or not track.artists[0]:
                raise ValueError("empty title or artist")
        except (KeyError, ValueError, AttributeError, TypeError):
            skipped += 1
            continue
        if tid in seen:
            dups += 1
            continue
        seen.add(tid)
        tracks.append(track)
    return tracks, ImportReport(read, len(tracks), skipped, dups)


def import_csv(files: Iterable[Path], store: Path) -> ImportReport:
    """Validate feature tables and store the usable rows as one normalised CSV at ``store``."""
    all_tracks: list[Track] = []
    totals = [0, 0, 0, 0]
    seen: set[str] = set()
    for f in files:
        with f.open(encoding="utf-8", newline="") as fh:
            tracks, rep = parse_feature_table(fh)
        for t in tracks:
            if t.key in seen:
                totals[3] += 1
                continue
            seen.add(t.key)
            all_tracks.append(t)
        totals[0] += rep.read
        totals[2] += rep.skipped
        totals[3] += rep.duplicates
    store.parent.mkdir(parents=True, exist_ok=True)
    with store.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(STORE_COLUMNS)
        for t in all_tracks:
            w.writerow([f"spotify:track:{t.key}", t.title, t.artists[0], t.valence, t.energy, t.tempo])
    log.info("imported %d tracks into %s", len(all_tracks), store)
    return ImportReport(totals[0], len(all_tracks), totals[2], totals[3])


def load_imported(store: Path) -> StaticCatalog:
    """Load a catalog written by :func:`import_csv`."""
    if not store.is_file():
        raise CatalogError(f"no imported catalog at {store}; run `moodring catalog import FILE` first")
    with store.open(encoding="utf-8", newline="") as fh:
        tracks, _ = parse_feature_table(fh)
    return StaticCatalog("imported", tuple(tracks))
