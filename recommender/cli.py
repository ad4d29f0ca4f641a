"""`moodring recommend` and `moodring catalog import` (no torch)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from recommender.mood import STRATEGIES

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_OUT = click.Path(dir_okay=False, path_type=Path)


def default_store() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "moodring" / "catalog.csv"


def build_recommender(catalog_file: Path | None = None):  # type: ignore[no-untyped-def]
    """Offline catalog (plus an imported table when given), in-memory history."""
    from recommender.catalogs import load_imported, load_offline_catalog
    from recommender.mood import load_mood_map
    from recommender.service import MemoryHistory, Recommender

    catalogs = [load_imported(catalog_file)] if catalog_file else []
    catalogs.append(load_offline_catalog())
    return Recommender(load_mood_map(), catalogs, MemoryHistory())


def format_recommendations(recs: list, strategy: str) -> list[str]:  # type: ignore[type-arg]
    lines = [f"music ({strategy}):"]
    for i, r in enumerate(recs, 1):
        lines.append(f"  {i}. {r.track.title} — {', '.join(r.track.artists)}  [{r.reason}]")
        for platform, url in r.track.choices or (("", r.track.url),):
            lines.append(f"     {platform + ': ' if platform else ''}{url}")
        if r.track.preview_url:
            lines.append(f"     preview: {r.track.preview_url}")
    return lines


@click.command("recommend")
@click.argument("emotion")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=None,
    help="match the mood, lift it (iso principle) or calm it; default depends on the emotion",
)
@click.option("--n", "count", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--catalog",
    "catalog_file",
    type=_FILE,
    default=None,
    help="an imported catalog (see `moodring catalog import`)",
)
def recommend_command(
    emotion: str, strategy: str | None, count: int, seed: int, catalog_file: Path | None
) -> None:
    """Recommend music for EMOTION (any emotion the mood map places) from the offline catalog."""
    rec = build_recommender(catalog_file)
    if emotion not in rec.mood_map.emotions:
        raise click.BadParameter(f"choose one of {', '.join(rec.mood_map.names)}", param_hint="EMOTION")
    chosen = strategy or rec.mood_map.default_strategy(emotion)
    picks = asyncio.run(rec.recommend(emotion, strategy=chosen, n=count, seed=seed))  # type: ignore[arg-type]
    for line in format_recommendations(picks, chosen):
        click.echo(line)


@click.group("catalog")
def catalog_group() -> None:
    """Manage the track catalog used for matching."""


@catalog_group.command("import")
@click.argument("files", nargs=-1, required=True, type=_FILE)
@click.option(
    "--into",
    type=_OUT,
    default=None,
    help="where to store the validated catalog [default: ~/.local/share/moodring/catalog.csv]",
)
def import_command(files: tuple[Path, ...], into: Path | None) -> None:
    """Validate CSV track tables (uri, track, artist, valence, energy, tempo, ...) and store them."""
    from recommender.catalogs import CatalogError, import_csv

    store = into or default_store()
    try:
        rep = import_csv(files, store)
    except CatalogError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"read {rep.read} rows: kept {rep.kept}, skipped {rep.skipped} invalid, "
        f"{rep.duplicates} duplicates → {store}"
    )
