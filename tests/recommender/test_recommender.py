from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inference.training.data import FER2013_CLASSES as EMOTIONS
from recommender.catalogs import (
    CatalogError,
    import_csv,
    load_imported,
    load_offline_catalog,
    parse_feature_table,
)
from recommender.mood import STRATEGIES, MoodMapError, MoodPoint, blend, load_mood_map
from recommender.service import MemoryHistory, Recommender

LINK = re.compile(r"^https://open\.spotify\.com/(track/[A-Za-z0-9]{22}|search/[^\s/]+)$")


def _offline() -> Recommender:
    return Recommender(load_mood_map(), [load_offline_catalog()], MemoryHistory())


def test_offline_catalog_is_large_and_varied() -> None:
    cat = load_offline_catalog()
    assert len(cat.tracks) >= 300
    assert len({t.genre for t in cat.tracks}) >= 15
    assert len({(t.year or 0) // 10 for t in cat.tracks}) >= 6
    quadrants = {((t.valence or 0) >= 0.5, (t.energy or 0) >= 0.5) for t in cat.tracks}
    assert len(quadrants) == 4
    assert all(LINK.match(t.url) for t in cat.tracks)


@pytest.mark.parametrize("emotion", [str(e) for e in EMOTIONS])
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_emotion_and_strategy_gives_five_fresh_tracks(emotion: str, strategy: str) -> None:
    rec = _offline()
    seen: set[str] = set()
    for call in range(3):
        picks = await rec.recommend(emotion, strategy=strategy, n=5, user="u1", seed=call)  # type: ignore[arg-type]
        assert len(picks) == 5
        artists = [p.track.main_artist for p in picks]
        assert len(set(artists)) == 5, artists
        keys = {p.track.key for p in picks}
        assert not keys & seen, "repeated a track within 3 consecutive calls"
        seen |= keys
        for p in picks:
            assert LINK.match(p.track.url)
            assert p.reason.endswith(emotion)


async def test_lift_rises_and_calm_settles() -> None:
    rec = _offline()
    lift = await rec.recommend("sad", strategy="lift", n=10)
    vals = [p.track.valence for p in lift]
    assert vals == sorted(vals)  # type: ignore[type-var]
    assert vals[-1] - vals[0] > 0.3  # type: ignore[operator]
    calm = await rec.recommend("angry", strategy="calm", n=10, user="other")
    energies = [p.track.energy for p in calm]
    assert energies == sorted(energies, reverse=True)  # type: ignore[type-var]


async def test_same_seed_same_list_and_probabilities_shift_the_start() -> None:
    a = await _offline().recommend("neutral", strategy="match", seed=3)
    b = await _offline().recommend("neutral", strategy="match", seed=3)
    assert [p.track.key for p in a] == [p.track.key for p in b]
    mm = load_mood_map()
    mostly_sad = mm.point_for({"sad": 0.7, "neutral": 0.3})
    assert mm.point("sad").valence < mostly_sad.valence < mm.point("neutral").valence


def test_group_blend_mean_and_least_misery() -> None:
    pts = [MoodPoint(0.9, 0.7), MoodPoint(0.9, 0.7), MoodPoint(0.1, 0.3)]
    mean = blend(pts)
    assert mean.valence == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    lm = blend(pts, method="least_misery")
    # the outvoted sad member is not left far away: minimax sits midway between the extremes
    assert lm.distance(pts[2]) == pytest.approx(lm.distance(pts[0]), abs=0.03)
    assert lm.distance(pts[2]) < mean.distance(pts[2])
    with pytest.raises(ValueError):
        blend([])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["emotions"].pop("sad"), "no place for the model's classes"),
        (lambda d: d["emotions"]["happy"].update(valence=1.5), "less than or equal"),
        (lambda d: d["strategies"]["lift"].update(target=None) or d["strategies"].pop("calm"), "strategies"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_invalid_mood_map_fails_clearly(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(Path("recommender/data/moods.json").read_text())
    mutate(data)
    bad = tmp_path / "moods.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(MoodMapError, match=message):
        load_mood_map(bad).require(EMOTIONS)
    with pytest.raises(MoodMapError, match="not found"):
        load_mood_map(tmp_path / "nope.json")


CSV = """track,artist,uri,danceability,energy,valence,tempo,decade
Bright One,Artist A,spotify:track:0000000000000000000001,0.5,0.80,0.90,128,2010
Dark One,Artist B,spotify:track:0000000000000000000002,0.5,0.20,0.10,70,2010
Calm One,Artist C,spotify:track:0000000000000000000003,0.5,0.25,0.60,80,2010
Mid One,Artist D,spotify:track:0000000000000000000004,0.5,0.50,0.50,100,2010
Sad Two,Artist E,spotify:track:0000000000000000000005,0.5,0.30,0.20,75,2010
Dup,Artist F,spotify:track:0000000000000000000001,0.5,0.80,0.90,128,2010
Bad Uri,Artist G,spotify:album:0000000000000000000009,0.5,0.50,0.50,100,2010
Out of range,Artist H,spotify:track:0000000000000000000008,0.5,1.50,0.50,100,2010
"""


def test_csv_import_validates_and_is_used(tmp_path: Path) -> None:
    src = tmp_path / "tracks.csv"
    src.write_text(CSV)
    store = tmp_path / "store" / "catalog.csv"
    rep = import_csv([src], store)
    assert (rep.read, rep.kept, rep.skipped, rep.duplicates) == (8, 5, 2, 1)
    cat = load_imported(store)
    assert {t.title for t in cat.tracks} == {"Bright One", "Dark One", "Calm One", "Mid One", "Sad Two"}
    assert all(t.url.startswith("https://open.spotify.com/track/") for t in cat.tracks)


async def test_imported_catalog_drives_matching(tmp_path: Path) -> None:
    src = tmp_path / "tracks.csv"
    src.write_text(CSV)
    store = tmp_path / "catalog.csv"
    import_csv([src], store)
    rec = Recommender(load_mood_map(), [load_imported(store), load_offline_catalog()], MemoryHistory())
    picks = await rec.recommend("sad", strategy="match", n=2)
    assert {p.track.title for p in picks} == {"Dark One", "Sad Two"}
    assert all(p.track.source == "imported" for p in picks)


def test_import_rejects_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="missing columns"):
        parse_feature_table(["name,artist\n", "x,y\n"])
