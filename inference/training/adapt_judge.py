"""Judge a community adapter before it is used: validate it leaving *people* out (scored on the
unbiased labels only: random asks and folder labels), decide whether it beats no adapter, and
fit-and-judge in one call (what the scheduled refit and ``moodring adapt fit`` run). The fit
itself is :mod:`inference.training.adapt`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from inference.serve.adapter import Adapter, AdapterFile
from inference.training.adapt import (
    Feedback,
    Fitted,
    Policy,
    Rates,
    ask_weights,
    feedback_weights,
    fit,
    fit_corrector,
    fit_weights,
    people_folds,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Validation:
    """Leave-people-out figures of a fit on the unbiased readings (random asks, folder labels)."""

    people: int
    folds: int
    scored: int  # unbiased labelled readings scored
    accuracy_none: float  # weighted, 0..1
    accuracy_adapter: float
    per_class: dict[str, tuple[float, float]]  # recall without, with

    @property
    def gain_points(self) -> float:
        return 100 * (self.accuracy_adapter - self.accuracy_none)


def validate(
    fb: Feedback,
    classes: Sequence[str],
    policy: Policy = Policy(),
    seed: int = 0,
    weights: np.ndarray | None = None,
    start: Fitted | None = None,
) -> Validation:
    """Fit on the other people, score each fold's unbiased readings, with and without the fit.

    The scores weigh each random ask by its collection weight (folder labels 1). ``weights``
    replaces the shipped fit weights (to judge another way of fitting, e.g. a plain fit), never
    the scoring.
    """
    scoring = feedback_weights(fb, policy)[0] if policy.judge == "weighted" else ask_weights(fb)
    unbiased = (fb.labels >= 0) & (scoring > 0)
    n_people = len(np.unique(fb.people))
    pred_none = fb.probs.argmax(axis=1)
    pred_fit = pred_none.copy()
    folds = people_folds(fb.people, policy.folds, seed) if n_people >= 2 else []
    whole = start
    if folds and whole is None:  # every fold's search starts from the fit on everyone
        w_all = fit_weights(fb, policy) if weights is None else weights
        whole = fit_corrector(fb.probs, fb.features, fb.labels, w_all, policy.prior, policy.prior_head)
    for rows in folds:
        test = rows[unbiased[rows]]
        if not len(test):
            continue
        train = np.setdiff1d(np.arange(len(fb)), rows)
        part = fb.subset(train)
        adapter = fit(
            part, classes, policy, "cv", weights=None if weights is None else weights[train], start=whole
        )
        pred_fit[test] = adapter.apply(fb.probs[test], fb.features[test]).argmax(axis=1)
    scored = unbiased if folds else np.zeros(len(fb), dtype=bool)
    sw = scoring[scored]
    truth = fb.labels[scored]

    def acc(pred: np.ndarray) -> float:
        return float((sw * (pred[scored] == truth)).sum() / sw.sum()) if sw.sum() > 0 else 0.0

    per_class = {}
    for i, name in enumerate(classes):
        m = truth == i
        if m.any():
            per_class[name] = (
                float((sw[m] * (pred_none[scored][m] == i)).sum() / sw[m].sum()),
                float((sw[m] * (pred_fit[scored][m] == i)).sum() / sw[m].sum()),
            )
    return Validation(n_people, len(folds), int(scored.sum()), acc(pred_none), acc(pred_fit), per_class)


@dataclass(frozen=True, slots=True)
class Decision:
    activate: bool
    reason: str


def decide(validation: Validation, policy: Policy = Policy()) -> Decision:
    """The activation guard: enough people, enough unbiased answers, and a validated gain."""
    if validation.people < policy.min_people:
        return Decision(False, f"{validation.people} contributors; at least {policy.min_people} needed")
    if validation.scored < policy.min_scored:
        return Decision(
            False,
            f"{validation.scored} randomly asked (or folder) answers to validate on; "
            f"at least {policy.min_scored} needed",
        )
    gain = validation.gain_points
    if gain < policy.margin:
        return Decision(False, f"validated gain {gain:+.1f} points, below the {policy.margin:g}-point margin")
    return Decision(True, f"validated gain {gain:+.1f} points (margin {policy.margin:g})")


def fit_and_judge(
    fb: Feedback,
    classes: Sequence[str],
    policy: Policy = Policy(),
    *,
    version: str,
    source: str,
    projection_sha256: str = "",
) -> tuple[Adapter, AdapterFile]:
    """Fit on everything, validate leaving people out, decide; the adapter and its record."""
    if fb.features.shape[1] and not projection_sha256:
        raise ValueError("a fit on projected features needs the projection's sha256")
    started = time.perf_counter()
    w = fit_weights(fb, policy)
    whole = fit_corrector(fb.probs, fb.features, fb.labels, w, policy.prior, policy.prior_head)
    adapter = fit(fb, classes, policy, version, projection_sha256, weights=w, start=whole)
    validation = validate(fb, classes, policy, start=whole)
    _, rates = feedback_weights(fb, policy)
    decision = decide(validation, policy)
    info = adapter.to_file(
        fitted_at=time.time(),
        readings=int((fb.labels >= 0).sum()),
        people=validation.people,
        source=source,
        activated=decision.activate,
        reason=decision.reason,
        validation=_validation_record(validation, rates, policy, time.perf_counter() - started),
    )
    return Adapter.from_file(info), info


def _validation_record(v: Validation, rates: Rates, policy: Policy, seconds: float) -> dict[str, Any]:
    return {
        "method": f"leave people out, {v.folds} folds, scored on "
        + (
            "every label weighted by how it was collected"
            if policy.judge == "weighted"
            else "the random asks and folder labels"
        ),
        "people": v.people,
        "scored": v.scored,
        "accuracy_without": round(v.accuracy_none, 4),
        "accuracy_with": round(v.accuracy_adapter, 4),
        "gain_points": round(v.gain_points, 2),
        "per_class_recall": {c: [round(a, 4), round(b, 4)] for c, (a, b) in v.per_class.items()},
        "rates": asdict(rates),
        "policy": asdict(policy),
        "seconds": round(seconds, 2),
    }
