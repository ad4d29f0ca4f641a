"""The community adapter in Redis: versions, rollback, one fitter at a time, refits from users'
labelled readings (written by the bot's store), and forget reaching the next fit. Real Redis."""

from __future__ import annotations

import asyncio
import random

import numpy as np
from redis.asyncio import Redis

from bot.store import UserStore
from inference.api.community import ACTIVE, PEOPLE, AdapterRegistry, read_contributions
from inference.serve.adapter import Adapter
from inference.training.community import ModelInfo, refit

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FEAR, NEUTRAL = 2, 4
INFO = ModelInfo(CLASSES, 0, "")  # a model without a feature projection: the probabilities alone


def _version(name: str, at: float) -> str:
    return Adapter.identity(CLASSES, name).to_json(fitted_at=at)


async def test_versions_activate_roll_back_and_switch_off(redis: Redis) -> None:
    reg = AdapterRegistry(redis)
    assert await reg.active() is None
    await reg.save("v1", _version("v1", 1), activate=True)
    await reg.save("v2", _version("v2", 2), activate=False)  # fitted, refused by the guard
    assert await reg.active_version() == "v1"
    await reg.save("v3", _version("v3", 3), activate=True)
    got = await reg.active()
    assert got is not None and got[0] == "v3" and Adapter.from_json(got[1], CLASSES).version == "v3"
    assert await reg.rollback() == "v1" and await reg.active_version() == "v1"
    assert await reg.rollback() is None and await reg.active_version() is None
    await reg.save("v4", _version("v4", 4), activate=True)
    await reg.deactivate("contributors withdrew")
    assert await reg.active_version() is None and await redis.get(ACTIVE) == b""
    assert await reg.rollback() == "v4"  # back to the version before the switch-off
    assert set(await reg.versions()) == {"v1", "v2", "v3", "v4"}


async def test_one_fitter_at_a_time(redis: Redis) -> None:
    reg = AdapterRegistry(redis)
    assert await reg.lock("worker-a")
    assert not await reg.lock("worker-b")
    await reg.unlock("worker-b")  # not the holder: nothing happens
    assert not await reg.lock("worker-b")
    await reg.unlock("worker-a")
    assert await reg.lock("worker-b")
    await reg.unlock("worker-b")
    await _contribute(redis, people=22, per=20)
    results = await asyncio.gather(*(refit(redis, INFO, owner=f"w{i}") for i in range(2)))
    messages = sorted(r.message for r in results)
    assert sum("lock held" in m for m in messages) == 1, messages
    assert len(await reg.versions()) == 1  # only one fit ran


def _reading(rng: np.random.Generator, label: int) -> dict[str, float]:
    """The model's probabilities for a face of class ``label``: fearful faces mostly read neutral,
    with fear a close second (a confusion the probabilities alone show)."""
    seen = NEUTRAL if label == FEAR and rng.random() < 0.8 else label
    logits = rng.normal(0, 0.3, len(CLASSES))
    logits[seen] += 2.5
    if seen != label:
        logits[label] += 2.0
    p = np.exp(logits) / np.exp(logits).sum()
    return {c: float(v) for c, v in zip(CLASSES, p, strict=True)}


async def _contribute(redis: Redis, people: int, per: int, first: int = 1000) -> UserStore:
    """``people`` users who contribute and label every reading (a third of them asked)."""
    store = UserStore(redis, CLASSES, ask_share=0.34, rng=random.Random(1))
    rng = np.random.default_rng(0)
    for user in range(first, first + people):
        await store.set_consent(user, True)
        await store.set_contributing(user, True)
        for i in range(per):
            label = int(rng.integers(0, len(CLASSES)))
            probs = _reading(rng, label)
            served = max(probs, key=probs.__getitem__)
            recorded = await store.record_reading(user, served, probs, at=1_700_000_000 + user + i / 100)
            await store.label(user, recorded.entry_id, CLASSES[label])
    return store


async def test_a_refit_learns_from_contributors_and_forget_reaches_it(redis: Redis) -> None:
    store = await _contribute(redis, people=22, per=20)
    first = await refit(redis, INFO)
    assert first.record is not None and first.record.activated, first.message
    assert first.record.people == 22 and first.record.readings == 22 * 20
    reg = AdapterRegistry(redis)
    assert await reg.active_version() == first.record.version
    for user in (1000, 1001, 1002):  # /mood forget, or turning "help improve readings" off
        if user == 1002:
            assert await store.set_contributing(user, False) == 20
        else:
            await store.forget(user)
    assert not await redis.sismember(PEOPLE, store.hash(1000))  # type: ignore[misc]
    assert store.hash(1001) not in {c.user_hash for c in await read_contributions(redis)}
    again = await refit(redis, INFO)
    assert again.record is not None and again.record.people == 19  # they are not in it
    assert not again.record.activated and "contributors" in again.record.reason
    # the active adapter held what the three gave, and its replacement can't be activated: off
    assert await reg.active_version() is None
    assert await reg.withdrawn() == 0


async def test_contributions_need_their_own_consent(redis: Redis) -> None:
    store = UserStore(redis, CLASSES, ask_share=0.0)
    await store.set_consent(7, True)
    probs = _reading(np.random.default_rng(1), 3)
    plain = await store.record_reading(7, "happy", probs)
    assert not plain.contributing
    done = await store.label(7, plain.entry_id, "happy")
    assert not done.contributed and await read_contributions(redis) == []
    await store.set_contributing(7, True)
    later = await store.record_reading(7, "happy", probs)
    assert (await store.label(7, later.entry_id, "sad")).contributed
    assert not (await store.label(7, plain.entry_id, "sad")).contributed  # shown before opting in
    [mine] = await read_contributions(redis)
    assert mine.shown == 1 and len(mine.records) == 1 and mine.records[0].kind == "correct"
    # one label per reading: the second pick replaces the first, in the prior too
    await store.label(7, later.entry_id, "angry")
    await store.label(7, later.entry_id, "fear")
    [mine] = await read_contributions(redis)
    assert [r.label for r in mine.records] == ["fear"]
    assert await store.prior(7) != {} and (await store.export(7))["prior"] == {
        "sad": 1,  # the reading from before opting in keeps its own correction
        "angry": 0,
        "fear": 1,
    }
