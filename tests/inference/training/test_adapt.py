"""The community adapter's fit: collection weights, the per-person cap, the recall floor, the guard."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from inference.serve.adapter import Adapter
from inference.training.adapt import (
    Feedback,
    Policy,
    cap_people,
    feedback_weights,
    fit,
    recall_floor,
)
from inference.training.adapt_judge import decide, fit_and_judge, validate

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FEAR, HAPPY, NEUTRAL = 2, 3, 4
DIMS = 8


def readings(people: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities of a model that calls most fearful faces neutral, features that carry the
    true class, true labels, and who gave each: a confusion a deployment's labels can fix."""
    rng = np.random.default_rng(seed)
    n = people * per
    y = rng.integers(0, len(CLASSES), n)
    seen = y.copy()
    seen[(y == FEAR) & (rng.random(n) < 0.8)] = NEUTRAL
    logits = rng.normal(0, 0.5, (n, len(CLASSES)))
    logits[np.arange(n), seen] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    feats = rng.normal(0, 1, (n, DIMS)).astype(np.float32)
    feats[:, 0] += 2.0 * (y == FEAR)  # what the face shows, which the probabilities lost
    who = np.array([f"p{i // per}" for i in range(n)], dtype=object)
    return probs, feats, y, who


def given(probs: np.ndarray, feats: np.ndarray, y: np.ndarray, who: np.ndarray) -> Feedback:
    return Feedback(probs, feats, y, who, np.array(["given"] * len(y), dtype=object))


def accuracy(adapter: Adapter | None, probs: np.ndarray, feats: np.ndarray, y: np.ndarray) -> float:
    p = probs if adapter is None else adapter.apply(probs, feats)
    return float((p.argmax(axis=1) == y).mean())


def test_a_fit_learns_a_confusion_that_holds_for_other_people() -> None:
    probs, feats, y, who = readings(30, 30)
    adapter = fit(given(probs, feats, y, who), CLASSES)
    test = readings(10, 30, seed=1)  # people it never saw
    assert accuracy(adapter, *test[:3]) > accuracy(None, *test[:3]) + 0.05
    v = validate(given(probs, feats, y, who), CLASSES)
    assert v.people == 30 and v.scored == len(y) and v.gain_points > 5
    assert decide(v).activate


def test_no_labels_change_nothing() -> None:
    probs, feats, y, who = readings(3, 10)
    empty = Feedback(probs[:0], feats[:0], y[:0], who[:0], np.array([], dtype=object))
    adapter = fit(empty, CLASSES)
    assert np.allclose(adapter.apply(probs, feats), probs, atol=1e-6)


def simulate(
    probs: np.ndarray,
    feats: np.ndarray,
    y: np.ndarray,
    who: np.ndarray,
    confirm: float,
    correct: float,
    seed: int,
) -> Feedback:
    """Users who confirm some right readings and correct some wrong ones; 20 % of readings ask."""
    rng = np.random.default_rng(seed)
    right = probs.argmax(1) == y
    rows, kinds, shown, asked = [], [], {}, {}
    for i in range(len(y)):
        shown[who[i]] = shown.get(who[i], 0) + 1
        if rng.random() < 0.2:
            asked[who[i]] = asked.get(who[i], 0) + 1
            rows.append(i)
            kinds.append("yes" if right[i] else "no")
        elif rng.random() < (confirm if right[i] else correct):
            rows.append(i)
            kinds.append("confirm" if right[i] else "correct")
    r = np.array(rows)
    return Feedback(probs[r], feats[r], y[r], who[r], np.array(kinds, dtype=object), shown, asked)


def test_the_guard_refuses_fits_that_do_not_beat_no_adapter() -> None:
    probs, feats, y, who = readings(40, 50)
    fb = simulate(probs, feats, y, who, confirm=0.1, correct=0.5, seed=5)
    test = readings(20, 50, seed=9)
    # fitted on corrections alone (what a guard judged on raw corrections would approve): worse
    only_corrections = np.where(fb.kinds == "correct", 1.0, 0.0)
    bad = fit(fb, CLASSES, weights=only_corrections)
    assert accuracy(bad, *test[:3]) < accuracy(None, *test[:3]) - 0.2
    for judge in ("weighted", "asks"):  # every label by its collection weight, or the asks alone
        v = validate(fb, CLASSES, replace(Policy(), judge=judge), weights=only_corrections)
        assert v.gain_points < 0 and not decide(v).activate and "below" in decide(v).reason
    shipped = validate(fb, CLASSES)
    assert decide(shipped).activate and accuracy(fit(fb, CLASSES), *test[:3]) > accuracy(None, *test[:3])
    few = given(probs[:300], feats[:300], y[:300], who[:300])  # 6 people
    assert (
        not decide(validate(few, CLASSES)).activate
        and "contributors" in decide(validate(few, CLASSES)).reason
    )
    # unasked picks only (no random ask answered): nothing unbiased to judge on, nothing activated
    kinds = np.where(probs.argmax(1) == y, "confirm", "correct").astype(object)
    picks = Feedback(probs, feats, y, who, kinds, {p: 50 for p in set(who)}, {})
    refused = decide(validate(picks, CLASSES))
    assert not refused.activate and "answers" in refused.reason


def test_collection_rates_are_estimated_from_the_random_asks() -> None:
    probs, feats, y, who = readings(40, 50)
    fb = simulate(probs, feats, y, who, confirm=0.1, correct=0.5, seed=4)
    w, rates = feedback_weights(fb)
    assert rates.confirm_rate == pytest.approx(0.1, abs=0.03)
    assert rates.correct_rate == pytest.approx(0.5, abs=0.1)
    right = fb.probs.argmax(1) == fb.labels
    truth = float((probs.argmax(1) == y).mean())
    assert float((fb.labels == fb.probs.argmax(1)).mean()) < truth - 0.05  # the raw labels are skewed
    assert float((w * right).sum() / w.sum()) == pytest.approx(truth, abs=0.04)  # the weighted ones aren't


def test_biased_feedback_fits_weighted_never_end_below_no_adapter() -> None:
    probs, feats, y, who = readings(40, 50)
    test = readings(20, 50, seed=9)
    for confirm in (0.1, 0.0):  # confirm 10 % / correct 50 %, and corrections only
        fb = simulate(probs, feats, y, who, confirm=confirm, correct=0.5, seed=5)
        adapter, record = fit_and_judge(fb, CLASSES, version="t", source="test", projection_sha256="p")
        hidden = accuracy(adapter, *test[:3]) if record.activated else accuracy(None, *test[:3])
        assert hidden >= accuracy(None, *test[:3])


def test_one_person_moves_a_fit_by_at_most_their_capped_share() -> None:
    probs, feats, y, who = readings(25, 20)
    honest = given(probs, feats, y, who)
    # a poisoner with 2,000 readings, every one labelled "happy"
    p2, f2, _, _ = readings(1, 2000, seed=7)
    bad = Feedback(
        np.concatenate([probs, p2]),
        np.concatenate([feats, f2]),
        np.concatenate([y, np.full(2000, HAPPY)]),
        np.concatenate([who, np.array(["poisoner"] * 2000, dtype=object)]),
        np.array(["given"] * (len(y) + 2000), dtype=object),
    )
    probe = readings(10, 30, seed=8)
    base = fit(honest, CLASSES).apply(*probe[:2]).argmax(1)

    def turned(policy: Policy) -> float:
        pred = fit(bad, CLASSES, policy).apply(*probe[:2]).argmax(1)
        return float(((pred == HAPPY) & (base != HAPPY)).mean())

    bare = replace(Policy(), balance=0.0, floor=1.0)  # the cap alone (no class balance, no floor)
    assert turned(replace(bare, cap=1.0)) > 0.3  # uncapped, the poisoner rewrites the adapter
    assert turned(bare) < 0.05
    assert turned(Policy()) < 0.05  # as shipped


def test_cap_people_holds_everyone_to_the_share() -> None:
    w = np.ones(60)
    who = np.array(["a"] * 40 + [f"p{i}" for i in range(20)], dtype=object)
    out = cap_people(w, who, 0.1)
    share = {p: out[who == p].sum() / out.sum() for p in set(who)}
    assert max(share.values()) == pytest.approx(0.1) and share["p0"] < 0.1
    assert np.allclose(cap_people(np.ones(4), np.array(list("abcd"), dtype=object), 0.1), 1.0)  # equal


def test_the_recall_floor_keeps_every_class_within_its_drop() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 300)
    base = labels.copy()  # no adapter reads every one right
    logits = rng.normal(0, 1, (300, 3)) + 3.0 * np.eye(3)[labels]
    logits[:, 0] += 3.0  # an adapter that leans hard towards class 0
    weights = np.ones(300)
    assert ((logits.argmax(1) == labels)[labels > 0]).mean() < 0.8  # before: classes 1 and 2 lose
    offsets = recall_floor(logits, base, labels, weights, drop=0.1)
    pred = (logits + offsets).argmax(1)
    for c in range(3):
        assert (pred[labels == c] == c).mean() >= 0.9 - 1e-9
