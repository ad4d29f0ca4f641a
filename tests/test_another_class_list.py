"""An 8th class is a manifest change plus retraining: everything builds from the manifest's classes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from redis.asyncio import Redis

import recommender
from bot import embeds, views
from bot.chart import mood_chart
from bot.mood_flow import CheckOutcome
from bot.store import MoodEntry, UserStore
from inference.api.contract import FaceResult
from inference.api.emotions import FALLBACK_EMOJI, load_registry
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.predictor import Predictor
from inference.training.data import FER2013_CLASSES
from recommender.catalogs import load_offline_catalog
from recommender.mood import MoodMapError, load_mood_map
from recommender.service import MemoryHistory, Recommender
from tests.conftest import face_photo, make_tiny_model

EIGHT = (*FER2013_CLASSES, "contempt")


@pytest.fixture(scope="module")
def eight_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("eight"), EIGHT)


def _mood_map_with_contempt(tmp_path: Path) -> Path:
    shipped = json.loads((Path(recommender.__file__).parent / "data" / "moods.json").read_text())
    shipped["emotions"]["contempt"] = {"valence": 0.3, "arousal": 0.5, "default_strategy": "lift"}
    path = tmp_path / "moods.json"
    path.write_text(json.dumps(shipped))
    return path


async def test_eight_classes_from_the_manifest_reach_every_reader(
    eight_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    registry = load_registry(eight_dir)
    assert registry.names == EIGHT
    assert registry["fear"].adjective == "fearful"  # styled in emotions.json
    assert registry["contempt"].emoji == FALLBACK_EMOJI  # not styled: plain, never a KeyError

    # serving: probabilities over 8 classes, a heatmap that renders
    predictor = Predictor.load(eight_dir, "full")
    assert isinstance(predictor.detector, FullFrameDetector)
    try:
        analysis = predictor.analyze(face_photo(size=(96, 96)))
    finally:
        predictor.close()
    assert set(analysis.faces[0].probs) == set(EIGHT)
    assert analysis.heatmap_jpeg is not None
    assert Image.open(io.BytesIO(analysis.heatmap_jpeg)).size == (96, 96)

    # music: the shipped mood map has no place for contempt, so start-up would stop; a map with one works
    with pytest.raises(MoodMapError, match="contempt"):
        load_mood_map().require(registry.names)
    mood_map = load_mood_map(_mood_map_with_contempt(tmp_path)).require(registry.names)
    rec = Recommender(mood_map, [load_offline_catalog()], MemoryHistory())
    tracks = await rec.recommend("contempt")
    assert len(tracks) == 5

    # the bot: reply, correction menu, history chart and store all take the registry's classes
    face = FaceResult(
        box=(0, 0, 9, 9),
        score=1.0,
        emotion="contempt",
        confidence=0.6,
        probs={c: (0.6 if c == "contempt" else 0.4 / 7) for c in EIGHT},
        reason="contempt: mostly the mouth (50% of the evidence)",
    )
    out = CheckOutcome(faces=(face,), tracks=tuple(tracks), strategy="lift", emotion="contempt")
    embed, _ = embeds.check_embed(out, registry)
    assert "You look **contempt**" in (embed.title or "")
    select = views.CorrectSelect(1, "1-0", registry)
    assert [o.value for o in select.item.options] == list(EIGHT)
    store = UserStore(redis, registry.names)
    await store.set_consent(1, True)
    entry = await store.record(1, "happy", face.probs)
    await store.correct(1, entry, "contempt")  # (picking the served class itself is a confirmation)
    assert set(await store.prior(1)) == set(EIGHT)
    chart = mood_chart(
        [MoodEntry(at=0.0 + 1e9, emotion="contempt", confidence=0.6, probs={})], 7, registry, now=1e9
    )
    assert chart.startswith(b"\x89PNG")
