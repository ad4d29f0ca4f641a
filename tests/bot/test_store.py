from __future__ import annotations

import json
import time

import pytest
from redis.asyncio import Redis

from bot.store import BotHistory, NoConsent, UserStore, summarize
from inference.api.contract import hash_user

FER2013 = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

PROBS = {
    "angry": 0.05,
    "disgust": 0.0,
    "fear": 0.05,
    "happy": 0.6,
    "neutral": 0.2,
    "sad": 0.05,
    "surprise": 0.05,
}


async def test_history_retention_and_summary(redis: Redis) -> None:
    store = UserStore(redis, FER2013, retention_days=90)
    await store.set_consent(1, True)
    now = time.time()
    await store.record(1, "sad", PROBS, at=now - 100 * 86400)  # outside retention: trimmed
    await store.record(1, "happy", PROBS, at=now - 10 * 86400)
    await store.record(1, "happy", PROBS, at=now - 2 * 86400)
    await store.record(1, "neutral", PROBS, at=now - 60)
    everything = await store.history(1)
    assert [e.emotion for e in everything] == ["neutral", "happy", "happy"]
    week = summarize(await store.history(1, days=7), 7)
    assert week["counts"] == {"neutral": 1, "happy": 1}
    month = summarize(await store.history(1, days=30), 30)
    assert month["most_frequent"] == "happy"


async def test_consent_decline_stores_nothing_and_forget_is_complete(redis: Redis) -> None:
    store = UserStore(redis, FER2013)
    assert await store.consent(2) is False
    await store.set_consent(2, True)
    entry = await store.record(2, "happy", PROBS)
    await store.correct(2, entry, "neutral")
    await BotHistory(store).add(hash_user(2), ["t1", "t2"])
    await store.take_cooldown(2, 30)
    exported = await store.export(2)
    assert exported["history"][0]["corrected"] == "neutral"
    assert exported["recent_recommendations"] == ["t2", "t1"]
    await store.set_consent(3, True)
    other = await store.record(3, "sad", PROBS)
    assert other
    assert len(await store.keys(2)) == 6
    assert await store.forget(2) == 6
    leftovers = [k async for k in redis.scan_iter(match="*")]
    assert all(hash_user(2) not in k.decode() for k in leftovers)
    assert len(await store.history(3)) == 1  # other users untouched
    await store.set_consent(3, False)
    assert await store.history(3) == []
    assert await redis.keys("*") == []
    assert await store.consent(3) is False


async def test_corrections_shift_future_probabilities(redis: Redis) -> None:
    store = UserStore(redis, FER2013)
    await store.set_consent(4, True)
    assert await store.prior(4) == {}  # no corrections: identity
    for _ in range(3):
        e = await store.record(4, "happy", PROBS)
        await store.correct(4, e, "neutral")
    weights = await store.prior(4)
    assert set(weights) == set(FER2013) and weights["neutral"] > 1 > weights["happy"]
    total = sum(PROBS[c] * w for c, w in weights.items())
    cal = {c: PROBS[c] * w / total for c, w in weights.items()}  # what the worker applies
    assert cal["neutral"] > PROBS["neutral"]
    assert cal["happy"] < PROBS["happy"]
    with pytest.raises(ValueError):
        await store.correct(4, e, "bored")


async def test_cooldown(redis: Redis) -> None:
    store = UserStore(redis, FER2013)
    assert await store.take_cooldown(5, 5) == 0.0
    left = await store.take_cooldown(5, 5)
    assert 0 < left <= 5


async def test_calm_face_baseline_is_averaged_exported_and_forgotten(redis: Redis) -> None:
    store = UserStore(redis, FER2013)
    await store.set_consent(6, True)
    assert await store.baseline(6) is None
    sad_at_rest = {**{c: 0.05 for c in FER2013}, "sad": 0.5, "neutral": 0.2}
    first = await store.add_baseline(6, sad_at_rest)
    assert first["photos"] == 1 and first["probs"]["sad"] == pytest.approx(0.5 / 0.95, abs=1e-4)
    calm = {**{c: 0.0 for c in FER2013}, "neutral": 1.0}
    second = await store.add_baseline(6, calm)
    assert second["photos"] == 2 and second["probs"]["neutral"] == pytest.approx(
        (0.2 / 0.95 + 1.0) / 2, abs=1e-4
    )
    for _ in range(10):
        capped = await store.add_baseline(6, calm)
    assert capped["photos"] == 5  # a running mean over at most five calm photos
    stored = await redis.get(f"moodring:user:{{{hash_user(6)}}}:baseline")
    assert stored is not None and set(json.loads(stored)) == {"probs", "photos", "at"}  # numbers only
    assert (await store.export(6))["calm_face_baseline"]["photos"] == 5
    assert await store.forget(6) >= 1
    assert await store.baseline(6) is None
    with pytest.raises(NoConsent):  # forgotten: nothing more is written
        await store.add_baseline(6, calm)
    await store.set_consent(6, True)
    await store.add_baseline(6, calm)
    assert await store.clear_baseline(6) is True and await store.clear_baseline(6) is False


async def test_raw_probabilities_and_the_baseline_mark_are_kept_with_a_reading(redis: Redis) -> None:
    store = UserStore(redis, FER2013)
    await store.set_consent(7, True)
    plain = await store.record(7, "happy", PROBS)
    adjusted = await store.record(7, "sad", PROBS, raw={"sad": 0.2, "happy": 0.8}, baseline=True)
    latest, older = await store.history(7)
    assert latest.baseline and latest.raw == {"sad": 0.2, "happy": 0.8}
    assert not older.baseline and older.raw is None
    one = await store.entry(7, adjusted)
    assert one is not None and one.baseline and one.raw == latest.raw
    assert await store.entry(7, plain) is not None and await store.entry(8, plain) is None


async def test_no_write_without_current_consent(redis: Redis) -> None:
    store = UserStore(redis, FER2013, consent_version=2)
    with pytest.raises(NoConsent):
        await store.record(9, "happy", PROBS)
    await redis.set(f"moodring:user:{{{hash_user(9)}}}:consent", json.dumps({"version": 1}))  # an old version
    with pytest.raises(NoConsent):
        await store.correct(9, "1-0", "sad")
    assert await store.keys(9) == [f"moodring:user:{{{hash_user(9)}}}:consent"]
    await store.set_consent(9, True)
    await store.record(9, "happy", PROBS)
    assert len(await store.history(9)) == 1


async def test_every_key_written_for_a_user_is_told_of_in_privacy_and_forgotten(redis: Redis) -> None:
    """What a user is told is kept (/mood privacy's KEPT table) is what forget deletes: write every
    kind of record the store has, then each key under the user's prefix must be in that table,
    and its phrase in the privacy text."""
    from bot import texts
    from bot.user_records import user_prefix

    store = UserStore(redis, FER2013)
    await store.set_consent(7, True)
    entry = await store.record(7, "happy", PROBS)
    await store.correct(7, entry, "sad")
    await BotHistory(store).add(hash_user(7), ["t1"])
    await store.take_cooldown(7, 30)
    await store.add_baseline(7, PROBS)
    await store.set_platform(7, "deezer")
    prefix = user_prefix(hash_user(7)) + ":"
    written = {k.decode().removeprefix(prefix) async for k in redis.scan_iter(match=prefix + "*")}
    assert len(written) >= 7
    assert written <= set(texts.KEPT)
    told = texts.privacy(days=90, min_people=5, refit="a day", contributing=False, given=0, rewrite="an hour")
    for name in written:
        assert texts.KEPT[name].format(days=90) in told
    assert await store.forget(7) == len(written)
