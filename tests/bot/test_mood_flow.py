from __future__ import annotations

import base64
import logging
from collections.abc import Mapping

import pytest
from redis.asyncio import Redis

from bot.mood_flow import check_mood, set_calm_face
from bot.store import BotHistory, UserStore
from inference.api.contract import FaceResult, JobResult
from inference.api.errors import MoodringError, NoFaceFound
from recommender.catalogs import load_offline_catalog
from recommender.mood import load_mood_map
from recommender.service import Recommender

PROBS = {
    "angry": 0.05,
    "disgust": 0.0,
    "fear": 0.05,
    "happy": 0.1,
    "neutral": 0.1,
    "sad": 0.65,
    "surprise": 0.05,
}
JPEG = b"\xff\xd8\xff\xe0fake"


class FakeAnalyzer:
    """Stands in for the queue client: answers like a worker would, or raises a typed error."""

    def __init__(self, error: MoodringError | None = None) -> None:
        self.error = error
        self.calls = 0
        self.priors: list[dict[str, float]] = []
        self.baselines: list[dict[str, float]] = []

    async def analyze(
        self,
        user_id: int | str,
        data: bytes,
        want_heatmap: bool = True,
        timeout_s: float | None = None,
        prior: Mapping[str, float] | None = None,
        baseline: Mapping[str, float] | None = None,
        job_id: str | None = None,
    ) -> JobResult:
        self.calls += 1
        self.priors.append(dict(prior or {}))
        self.baselines.append(dict(baseline or {}))
        if self.error:
            raise self.error
        face = FaceResult(
            box=(0, 0, 10, 10),
            score=0.99,
            emotion="sad",
            confidence=0.65,
            probs=PROBS,
            reason="sad: mostly the mouth (40% of the evidence)",
        )
        return JobResult(job_id="abcdefgh12", faces=(face,), heatmap_jpeg_b64=base64.b64encode(JPEG).decode())


async def _photo() -> bytes:
    return b"photo-bytes"


def _rec(redis: Redis) -> Recommender:
    return Recommender(load_mood_map(), [load_offline_catalog()], BotHistory(UserStore(redis, tuple(PROBS))))


async def test_flow_requires_consent_and_stores_only_labels(redis: Redis) -> None:
    store, analyzer = UserStore(redis, tuple(PROBS)), FakeAnalyzer()
    out = await check_mood(10, _photo, store=store, analyzer=analyzer, recommender=_rec(redis))
    assert out.error == "consent_needed" and analyzer.calls == 0
    await store.set_consent(10, False)
    out = await check_mood(10, _photo, store=store, analyzer=analyzer, recommender=_rec(redis))
    assert out.error == "consent_needed" and analyzer.calls == 0
    assert await store.history(10) == []

    await store.set_consent(10, True)
    out = await check_mood(10, _photo, store=store, analyzer=analyzer, recommender=_rec(redis))
    assert out.error is None
    assert out.faces[0].emotion == "sad" and out.faces[0].top(1)[0] == ("sad", 0.65)
    assert out.heatmap_jpeg == JPEG
    assert len(out.tracks) == 5 and out.strategy == "lift"
    assert [e.emotion for e in await store.history(10)] == ["sad"]
    for key in [k async for k in redis.scan_iter(match="*")]:
        kind = (await redis.type(key)).decode()
        blob = repr(await redis.xrange(key)) if kind == "stream" else repr(await redis.dump(key))
        assert "photo-bytes" not in blob and "/9j/" not in blob and "http" not in blob

    again = await check_mood(10, _photo, store=store, analyzer=analyzer, recommender=_rec(redis))
    assert again.error == "cooldown" and again.retry_after_s > 0


async def test_typed_worker_errors_become_outcomes(redis: Redis) -> None:
    store = UserStore(redis, tuple(PROBS))
    await store.set_consent(11, True)
    out = await check_mood(
        11,
        _photo,
        store=store,
        analyzer=FakeAnalyzer(NoFaceFound()),
        recommender=_rec(redis),
        cooldown_s=0.001,
    )
    assert out.error == "no_face"
    assert await store.history(11) == []


async def test_corrections_travel_with_the_job_as_a_prior(redis: Redis) -> None:
    store, analyzer = UserStore(redis, tuple(PROBS)), FakeAnalyzer()
    await store.set_consent(12, True)
    await check_mood(12, _photo, store=store, analyzer=analyzer, recommender=_rec(redis), cooldown_s=0)
    assert analyzer.priors == [{}]  # no corrections: the worker reads the face as it is
    entry = (await store.history(12))[0]
    await store.correct(12, f"{int(entry.at * 1000)}-0", "happy")
    await check_mood(12, _photo, store=store, analyzer=analyzer, recommender=_rec(redis), cooldown_s=0)
    sent = analyzer.priors[-1]
    assert set(sent) == set(PROBS) and max(sent, key=sent.__getitem__) == "happy"


async def test_calm_face_needs_consent_keeps_numbers_only_and_travels_with_later_jobs(redis: Redis) -> None:
    store, analyzer = UserStore(redis, tuple(PROBS)), FakeAnalyzer()
    out = await set_calm_face(13, _photo, store=store, analyzer=analyzer, cooldown_s=0)
    assert out.error == "consent_needed" and analyzer.calls == 0 and await store.baseline(13) is None
    await store.set_consent(13, True)
    failed = await set_calm_face(13, _photo, store=store, analyzer=FakeAnalyzer(NoFaceFound()), cooldown_s=0)
    assert failed.error == "no_face" and await store.baseline(13) is None
    out = await set_calm_face(13, _photo, store=store, analyzer=analyzer, cooldown_s=0)
    assert out.error is None and out.photos == 1 and out.reads_as == "sad"
    assert analyzer.baselines == [{}] and analyzer.priors == [
        {}
    ]  # the calm face is read as the model sees it
    saved = await store.baseline(13)
    assert saved is not None and saved["probs"] == pytest.approx(PROBS, abs=1e-4)
    await check_mood(13, _photo, store=store, analyzer=analyzer, recommender=_rec(redis), cooldown_s=0)
    assert analyzer.baselines[-1] == saved["probs"]


def test_the_reply_says_how_many_faces_were_not_read() -> None:
    from bot import embeds
    from bot.mood_flow import CheckOutcome
    from inference.api.emotions import EmotionRegistry

    face = FaceResult(
        box=(0, 0, 9, 9), score=1.0, emotion="sad", confidence=0.65, probs=PROBS, reason="sad: …"
    )
    out = CheckOutcome(faces=(face,) * 8, faces_found=11, emotion="sad", probs=PROBS)
    embed, _ = embeds.check_embed(out, EmotionRegistry(tuple(PROBS)))
    assert "3 more faces I didn't read" in embed.fields[0].value  # type: ignore[operator]
    assert "You look **sad**" in (embed.title or "")


class ForgettingAnalyzer(FakeAnalyzer):
    """The user runs ``/mood forget`` while the worker is reading their photo."""

    def __init__(self, store: UserStore, user_id: int) -> None:
        super().__init__()
        self.store, self.user_id = store, user_id

    async def analyze(self, user_id: int | str, data: bytes, **kwargs: object) -> JobResult:
        result = await super().analyze(user_id, data)
        await self.store.forget(self.user_id)
        return result


async def test_a_forget_during_the_reading_keeps_nothing_and_says_so(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = UserStore(redis, tuple(PROBS))
    await store.set_consent(14, True)
    out = await check_mood(
        14, _photo, store=store, analyzer=ForgettingAnalyzer(store, 14), recommender=_rec(redis), cooldown_s=0
    )
    assert out.error == "forgotten_during_check" and not out.faces
    await store.set_consent(14, True)
    calm = await set_calm_face(14, _photo, store=store, analyzer=ForgettingAnalyzer(store, 14), cooldown_s=0)
    assert calm.error == "forgotten_during_check"
    assert await store.history(14) == [] and await store.baseline(14) is None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
