"""How close does the recommender get to its targets, versus random picks from the same catalog?

Imports ../shared/datasets/spotify_hit_predictor (real Spotify valence/energy), then for
every emotion x strategy takes the top 10 and measures mean |valence - target| and
|energy - target| along the strategy's path, against 500 random 10-track draws. Also
checks that `lift` lists rise monotonically in valence, and how well the offline
catalog's hand-assigned coordinates agree with Spotify's for the tracks both contain.

Then two figures for where people listen (no network: the keyless link sources are faked on
127.0.0.1 with the answer times given by --delays, a private redis-server caches):

- coverage: for every emotion x strategy, the distinct tracks one user gets over 20 replies of 5
  (the recommender avoids the last 30 it gave), from the built-in catalog and from the import;
- links: per platform, how many of a reply's 5 tracks get the exact track link, cold (first
  reply: the 300 ms deadline), after the bot's edit of that reply (when the lookups the reply
  didn't wait for land, bot.late_links) and warm (the next reply), and the time the links add.

    python -m benchmarks.recommender_eval [--data ../shared/datasets/spotify_hit_predictor]
                                           [--delays itunes=0.15,deezer=0.12,odesli=0.45]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

from recommender.catalogs import import_csv, load_imported, load_offline_catalog
from recommender.mood import STRATEGIES, load_mood_map
from recommender.service import MemoryHistory, Recommender


def errors(tracks: list, path: list) -> tuple[float, float]:  # type: ignore[type-arg]
    dv = statistics.mean(abs(t.valence - p.valence) for t, p in zip(tracks, path, strict=True))
    de = statistics.mean(abs(t.energy - p.arousal) for t, p in zip(tracks, path, strict=True))
    return dv, de


async def coverage(catalogs: dict[str, Any]) -> None:
    mm = load_mood_map()
    print("\n| emotion | strategy | " + " | ".join(f"distinct in 20 replies ({n})" for n in catalogs) + " |")
    print("|---|---|" + "---|" * len(catalogs))
    for emotion in mm.names:
        for strategy in STRATEGIES:
            counts = []
            for cat in catalogs.values():
                rec = Recommender(mm, [cat], MemoryHistory(), pool_size=2000)
                seen: set[str] = set()
                for i in range(20):
                    picks = await rec.recommend(str(emotion), strategy=strategy, n=5, user="u", seed=i)
                    seen.update(p.track.key for p in picks)
                counts.append(str(len(seen)))
            print(f"| {emotion} | {strategy} | " + " | ".join(counts) + " |")


async def links(delays: dict[str, float]) -> None:
    from redis.asyncio import Redis

    from recommender.links import LinkResolver
    from recommender.platforms import CHOICES
    from tests.conftest import spawn_redis
    from tests.fakemusic import sources, start_fakes

    server, url = spawn_redis("--save", "", "--appendonly", "no", workdir=tempfile.mkdtemp())
    redis = Redis.from_url(url)
    fakes_gen = cast(AsyncGenerator[Any, None], start_fakes())
    fakes = await anext(fakes_gen)
    fakes.delays = delays
    fakes.artists = {f"{t.artists[0]} {t.title}": t.artists[0] for t in load_offline_catalog().tracks}
    mm = load_mood_map()
    print(f"\nlink sources faked with answer times {delays} (s); 5 tracks per reply, 14 replies each")
    print(
        "| platform | exact links, cold reply | after its edit | edit lands, ms p50 | exact links, warm |"
        " added ms, cold p50 / max | added ms, warm p50 |"
    )
    print("|---|---|---|---|---|---|---|")
    try:
        for choice in CHOICES:
            resolver = LinkResolver(sources(fakes, itunes=10_000, odesli=10_000), redis, deadline_s=0.3)
            rec = Recommender(mm, [load_offline_catalog()], MemoryHistory(), links=resolver)
            runs: dict[str, list[tuple[int, float]]] = {"cold": [], "edited": [], "warm": []}
            edits: list[float] = []  # ms from the reply's start to its edit, where it had one
            for emotion in mm.names:
                for strategy in ("match", "lift"):
                    picks = await rec.recommend(
                        str(emotion), strategy=strategy, n=5, user=f"{emotion}{strategy}"
                    )
                    await redis.flushdb()  # cold: nothing cached, no rate spent
                    for phase in ("cold", "warm"):
                        started = time.perf_counter()
                        linked = await rec.linked(picks, choice)
                        took = (time.perf_counter() - started) * 1000
                        runs[phase].append((_count(linked), took))
                        if phase == "cold":  # the bot edits the reply when the rest lands
                            after = await rec.settled(linked, choice)
                            if after is not None:
                                edits.append((time.perf_counter() - started) * 1000)
                            runs["edited"].append((_count(after or linked), 0.0))
                        await resolver.drain()
            cold, edited, warm = runs["cold"], runs["edited"], runs["warm"]
            print(
                f"| {choice} | {statistics.mean(d for d, _ in cold):.1f} of 5 "
                f"| {statistics.mean(d for d, _ in edited):.1f} of 5 "
                f"| {f'{statistics.median(edits):.0f}' if edits else 'no edit'} "
                f"| {statistics.mean(d for d, _ in warm):.1f} of 5 | "
                f"{statistics.median(t for _, t in cold):.0f} / {max(t for _, t in cold):.0f} | "
                f"{statistics.median(t for _, t in warm):.0f} |"
            )
    finally:
        await fakes_gen.aclose()
        await redis.aclose()
        server.terminate()


def _count(picks: list[Any]) -> int:
    """How many picks open the exact track (or song.link's page for it), not a search."""
    return sum(not r.track.choices and "/search" not in r.track.url for r in picks)


async def main_async(data: Path, delays: dict[str, float]) -> None:
    catalogs: dict[str, Any] = {"built-in": load_offline_catalog()}
    if data.exists():
        catalogs["imported"] = await features(data)
    await coverage(catalogs)
    await links(delays)


async def features(data: Path) -> Any:
    files = sorted(data.glob("dataset-of-*.csv"))
    store = Path(tempfile.mkdtemp()) / "catalog.csv"
    rep = import_csv(files, store)
    cat = load_imported(store)
    print(
        f"imported {rep.kept} tracks ({rep.skipped} invalid, {rep.duplicates} duplicates) "
        f"from {len(files)} files"
    )
    mm = load_mood_map()
    rng = random.Random(0)
    print(
        "| emotion | strategy | top-10 |Δvalence| | random | top-10 |Δenergy| | random "
        "| ratio (v, e) | lift monotonic |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for emotion in mm.names:
        for strategy in STRATEGIES:
            rec = Recommender(mm, [cat], MemoryHistory(), pool_size=2000)
            picks = await rec.recommend(str(emotion), strategy=strategy, n=10)
            tracks = [p.track for p in picks]
            path = [p.target for p in picks]
            dv, de = errors(tracks, path)
            rand = [errors(rng.sample(cat.tracks, 10), path) for _ in range(500)]
            rv, re_ = statistics.mean(r[0] for r in rand), statistics.mean(r[1] for r in rand)
            mono = "-"
            if strategy == "lift":
                vals = [t.valence for t in tracks if t.valence is not None]
                mono = "yes" if all(a <= b for a, b in pairwise(vals)) else "NO"
            ratios.append((rv / dv, re_ / de))
            print(
                f"| {emotion} | {strategy} | {dv:.3f} | {rv:.3f} | {de:.3f} | {re_:.3f} | "
                f"{rv / dv:.1f}x, {re_ / de:.1f}x | {mono} |"
            )
    print(f"worst ratio: valence {min(r[0] for r in ratios):.1f}x, energy {min(r[1] for r in ratios):.1f}x")

    spotify = {(t.artists[0].lower(), t.title.lower()): t for t in cat.tracks}
    pairs = []
    for t in load_offline_catalog().tracks:
        for artist in t.artists:
            hit = spotify.get((artist.lower(), t.title.lower()))
            if hit:
                pairs.append((t, hit))
                break
    if pairs:
        mv = statistics.mean(abs(a.valence - b.valence) for a, b in pairs)  # type: ignore[operator]
        me = statistics.mean(abs(a.energy - b.energy) for a, b in pairs)  # type: ignore[operator]
        cv = statistics.correlation([a.valence for a, _ in pairs], [b.valence for _, b in pairs])  # type: ignore[misc]
        ce = statistics.correlation([a.energy for a, _ in pairs], [b.energy for _, b in pairs])  # type: ignore[misc]
        print(
            f"offline catalog vs Spotify features on {len(pairs)} shared tracks: "
            f"valence MAE {mv:.3f} (r={cv:.2f}), energy MAE {me:.3f} (r={ce:.2f})"
        )
    return cat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/spotify_hit_predictor"))
    ap.add_argument("--delays", default="itunes=0.15,deezer=0.12,odesli=0.45")
    args = ap.parse_args()
    delays = {k: float(v) for k, v in (item.split("=") for item in args.delays.split(","))}
    asyncio.run(main_async(args.data, delays))


if __name__ == "__main__":
    main()
