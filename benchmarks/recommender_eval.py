"""How close does the recommender get to its targets, versus random picks from the same catalog?

Imports ../shared/datasets/spotify_hit_predictor (real Spotify valence/energy), then for
every emotion x strategy takes the top 10 and measures mean |valence - target| and
|energy - target| along the strategy's path, against 500 random 10-track draws. Also
checks that `lift` lists rise monotonically in valence, and how well the offline
catalog's hand-assigned coordinates agree with Spotify's for the tracks both contain.

    python benchmarks/recommender_eval.py [--data ../shared/datasets/spotify_hit_predictor]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
from itertools import pairwise
from pathlib import Path

from recommender.catalogs import import_csv, load_imported, load_offline_catalog
from recommender.mood import STRATEGIES, load_mood_map
from recommender.service import MemoryHistory, Recommender


def errors(tracks: list, path: list) -> tuple[float, float]:  # type: ignore[type-arg]
    dv = statistics.mean(abs(t.valence - p.valence) for t, p in zip(tracks, path, strict=True))
    de = statistics.mean(abs(t.energy - p.arousal) for t, p in zip(tracks, path, strict=True))
    return dv, de


async def main_async(data: Path) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/spotify_hit_predictor"))
    asyncio.run(main_async(ap.parse_args().data))


if __name__ == "__main__":
    main()
