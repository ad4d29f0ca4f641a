"""Fit the community adapter from labelled readings, weighted for how feedback is collected
(validating it leaving people out and the activation guard: :mod:`inference.training.adapt_judge`).

Numpy and scipy only (no torch): the worker runs the scheduled fit, ``moodring adapt fit`` the
operator's. The numbers it fits are :class:`inference.serve.adapter.Adapter`'s.

Why the weights. Users don't label readings at random: measured on real photos, people who
correct wrong readings 5× more often than they confirm right ones (confirm 10 %, correct 50 %)
make a plain fit *worse* than no adapter. So on a random share of readings the bot asks "Did I get
it right?" (Yes / No of equal weight). Those answers are an unbiased sample: they estimate how
often readings are right, hence how often users confirm right readings and correct wrong ones
unasked, and each label is weighted by the inverse of its collection rate. The activation guard
scores only those random asks (and folder labels, which are unbiased too), leaving *people* out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from inference.serve.adapter import LOG_FLOOR, Adapter

log = logging.getLogger(__name__)

# confirm / correct: a user's own pick under a reading nobody asked about (biased);
# yes / no: the answer to a random "Did I get it right?" (unbiased; a "no" carries the pick, if
# any); given: a label an operator supplied (a folder of labelled photos; unbiased).
Kind = Literal["confirm", "correct", "yes", "no", "given"]
UNBIASED = ("yes", "no", "given")


@dataclass(frozen=True, slots=True)
class Feedback:
    """Labelled readings as arrays, one row each, and what each person was shown."""

    probs: np.ndarray  # (N, C) the network's own probabilities (before adapter, prior, calm face)
    features: np.ndarray  # (N, D) the faces' projected features (D = 0: the corrector reads probs only)
    labels: np.ndarray  # (N,) class index; -1: a "no" without a pick (counts for the rates only)
    people: np.ndarray  # (N,) who gave it (a user hash, a performer, ...)
    kinds: np.ndarray  # (N,) a Kind
    shown: Mapping[str, int] = field(default_factory=dict)  # readings shown per person while contributing
    asked: Mapping[str, int] = field(default_factory=dict)  # of which asked "Did I get it right?"

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> Feedback:
        keep = set(self.people[rows].tolist())
        return Feedback(
            self.probs[rows],
            self.features[rows],
            self.labels[rows],
            self.people[rows],
            self.kinds[rows],
            {p: n for p, n in self.shown.items() if p in keep},
            {p: n for p, n in self.asked.items() if p in keep},
        )


PRIOR, PRIOR_HEAD = 6.0, 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    """When a fit may be activated, and how it is fitted. Defaults are the shipped ones."""

    min_people: int = 20  # contributors below this: nothing is activated
    margin: float = 1.0  # points a fit must beat no adapter by, validated leaving people out
    min_scored: int = 50  # random-ask (or folder) answers the guard needs to score
    cap: float = 0.1  # one person's share of a fit's total weight, at most
    min_kind: int = 5  # unasked confirms and corrections each needed before they are used
    # pulls towards "no change", as if that many extra readings said so: divided by the fit's
    # effective number of readings, so few labels move the adapter little and many move it freely
    prior: float = PRIOR  # on W (towards the identity) and b (towards 0)
    prior_head: float = PRIOR_HEAD  # on the feature head (towards 0)
    balance: float = 0.5  # classes weighted by (1 / their total weight) ** balance
    floor: float = 0.1  # no class may lose more recall than this, out of fold (bias raised until so)
    inner_folds: int = 5  # people-out folds that measure that recall inside a fit
    in_sample_above: float = 20_000  # effective readings above which that recall is measured in sample
    folds: int = 5  # people-out folds of the guard (fewer when fewer people)
    # what the guard scores: only the random asks (and folder labels), or every label weighted
    # by its collection weight (more of them, as unbiased as the estimated rates)
    judge: Literal["asks", "weighted"] = "weighted"


@dataclass(frozen=True, slots=True)
class Rates:
    """How labels were collected, estimated from the random asks."""

    asked_shown: int  # readings on which the bot asked
    asked_answered: int
    right_share: float | None  # share of readings users said were right (from the asks)
    unasked_shown: int
    confirms: int
    corrections: int
    confirm_rate: float | None  # of right unasked readings, the share users confirmed (None: not used)
    correct_rate: float | None  # of wrong unasked readings, the share users corrected (None: not used)


def feedback_weights(fb: Feedback, policy: Policy = Policy()) -> tuple[np.ndarray, Rates]:
    """A weight per reading so the weighted set stands for *every* reading shown.

    The readings shown split four ways: asked or not, right or wrong (the asks say how many are
    right: a share ``a``). Each part's mass is spread over the labels that stand for it:

    * asked: the answered asks (asks shown / asks answered each); a "no" with a pick also stands
      for the "no"s without one;
    * unasked and right (a × unasked readings): the unasked confirms, each 1 / confirm rate; or,
      with too few confirms to estimate that rate, the asks answered "yes";
    * unasked and wrong ((1 − a) × unasked readings): the unasked corrections, each 1 / correct
      rate; or, with too few corrections, the asks answered "no" with a pick.

    Without any answered ask nothing can be estimated: only folder labels ("given") weigh.
    """
    kinds, labelled = fb.kinds, fb.labels >= 0
    w = np.zeros(len(fb), dtype=np.float64)
    w[kinds == "given"] = 1.0
    yes, no = kinds == "yes", kinds == "no"
    picked = no & labelled
    confirm, correct = kinds == "confirm", kinds == "correct"
    c, k = int(confirm.sum()), int(correct.sum())
    answered = int(yes.sum() + no.sum())
    asked_shown = max(int(sum(fb.asked.values())), answered)
    unasked_shown = max(int(sum(fb.shown.values())) - asked_shown, 0)
    if not answered:
        w[~labelled] = 0.0
        return w, Rates(asked_shown, 0, None, unasked_shown, c, k, None, None)
    w_ask = asked_shown / answered
    w[yes] = w_ask
    if picked.any():
        w[picked] = w_ask * no.sum() / picked.sum()
    right = float((yes.sum() + 1) / (answered + 2))
    confirm_rate = correct_rate = None
    for mass, own, rate_of, stand_in in (
        (right * unasked_shown, confirm, "confirm", yes),
        ((1 - right) * unasked_shown, correct, "correct", picked),
    ):
        n = int(own.sum())
        if mass <= 0:
            continue
        if n >= policy.min_kind:
            rate = min(1.0, n / mass)
            w[own] = 1 / rate
            if rate_of == "confirm":
                confirm_rate = rate
            else:
                correct_rate = rate
        elif stand_in.any():
            w[stand_in] += mass / stand_in.sum()
    w[~labelled] = 0.0
    return w, Rates(asked_shown, answered, right, unasked_shown, c, k, confirm_rate, correct_rate)


def ask_weights(fb: Feedback) -> np.ndarray:
    """Weights of the unbiased labels alone: folder labels 1, answered asks 1 each, and a "no"
    with a pick also standing for the "no"s without one. What the guard scores by default."""
    w = np.zeros(len(fb), dtype=np.float64)
    w[fb.kinds == "given"] = 1.0
    yes, no = fb.kinds == "yes", fb.kinds == "no"
    picked = no & (fb.labels >= 0)
    w[yes] = 1.0
    if picked.any():
        w[picked] = no.sum() / picked.sum()
    w[fb.labels < 0] = 0.0
    return w


def cap_people(weights: np.ndarray, people: np.ndarray, cap: float) -> np.ndarray:
    """Scale the heaviest people's weights down so no one holds more than ``cap`` of the total.

    Water-filling: the k heaviest are each set to the level c = cap·rest / (1 − cap·k), where
    ``rest`` is everyone else's total, for the smallest k that leaves the others under c. With
    fewer than 1 / ``cap`` people that is impossible: then everyone gets an equal share. A user who
    labels wrongly on purpose (or simply a lot) moves a fit by at most that share.
    """
    w = weights.astype(np.float64).copy()
    names, index = np.unique(people, return_inverse=True)
    per = np.bincount(index, weights=w, minlength=len(names))
    total = per.sum()
    if len(names) == 0 or total <= 0:
        return w
    if cap * len(names) <= 1:
        level = np.full(len(names), total / len(names))
    else:
        order = np.argsort(-per)
        level = per.copy()
        for k in range(len(names)):
            rest = per[order[k:]].sum()
            c = cap * rest / (1 - cap * k) if k else cap * total
            if k == len(names) or per[order[k]] <= c:
                level[order[:k]] = c
                break
    scale = np.divide(level, per, out=np.ones_like(per), where=per > 0)
    capped: np.ndarray = w * scale[index]
    return capped


Fitted = tuple[np.ndarray, np.ndarray, np.ndarray]  # W (C, C), V (C, D), b (C,)


def fit_corrector(
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    prior: float = PRIOR,
    prior_head: float = PRIOR_HEAD,
    start: Fitted | None = None,
) -> Fitted:
    """W, V, b minimising the weighted mean cross-entropy of softmax(W·log p + V·x + b), plus
    (prior·‖(W − I, b)‖² + prior_head·‖V‖²) / n, n the effective number of readings
    ((Σw)² / Σw²), so with few labels it stays near "no change".

    L-BFGS from ``start`` (a fit on similar data: the inner and validation fits start from the
    whole fit, which saves most of their iterations) or from the identity. The per-reading work
    runs in float32 (the sums in float64): 100,000 readings cost ~40 ms an iteration on 2 cores.
    """
    from scipy.optimize import minimize

    c, d = probs.shape[1], features.shape[1]
    eye = np.eye(c)
    keep = (weights > 0) & (labels >= 0)
    if not keep.any():
        return eye, np.zeros((c, d)), np.zeros(c)
    lp = np.log(np.clip(probs[keep], LOG_FLOOR, 1.0)).astype(np.float32)
    x = features[keep].astype(np.float32)
    rows = labels[keep]
    w64 = weights[keep] / weights[keep].sum()
    w = w64.astype(np.float32)
    n_eff = 1.0 / float((w64 * w64).sum())
    l2, l2_head = prior / n_eff, prior_head / n_eff
    nw, nv = c * c, c * d
    index = np.arange(len(rows))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wm, vm, b = theta[:nw].reshape(c, c), theta[nw : nw + nv].reshape(c, d), theta[nw + nv :]
        z = lp @ wm.T.astype(np.float32) + x @ vm.T.astype(np.float32) + b.astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1)
        dw = wm - eye
        nll = np.log(total) - z[index, rows]
        value = (
            float((w64 * nll).sum()) + l2 * float((dw * dw).sum() + b @ b) + l2_head * float((vm * vm).sum())
        )
        g = e / total[:, None]
        g[index, rows] -= 1.0
        g *= w[:, None]
        grads = (
            (g.T @ lp).astype(np.float64) + 2 * l2 * dw,
            (g.T @ x).astype(np.float64) + 2 * l2_head * vm,
            g.sum(axis=0, dtype=np.float64) + 2 * l2 * b,
        )
        return value, np.concatenate([part.ravel() for part in grads])

    first = start or (eye, np.zeros((c, d)), np.zeros(c))
    theta0 = np.concatenate([part.ravel() for part in first])
    theta = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 1000}).x
    return theta[:nw].reshape(c, c), theta[nw : nw + nv].reshape(c, d), theta[nw + nv :]


def balance_classes(weights: np.ndarray, labels: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    """Scale each class's rows by (1 / the class's total weight) ** power (0: unchanged).

    Corrects confusions rather than learning how often each mood occurs among those who label.
    """
    ok = labels >= 0
    totals = np.bincount(labels[ok], weights=weights[ok], minlength=n_classes)
    scale = np.where(totals > 0, np.maximum(totals, 1e-12) ** -power, 0.0)
    out = weights.copy()
    out[ok] *= scale[labels[ok]]
    out[~ok] = 0.0
    balanced: np.ndarray = out * (weights.sum() / max(out.sum(), 1e-12))
    return balanced


def recall_floor(
    logits: np.ndarray, base: np.ndarray, labels: np.ndarray, weights: np.ndarray, drop: float
) -> np.ndarray:
    """Bias offsets so no class's (weighted) recall falls more than ``drop`` below ``base``'s.

    ``logits`` are a fit's out-of-fold scores, ``base`` the predictions without adapter. The class
    that lost most is raised a step at a time until none has lost more than ``drop``.
    """
    n_classes = logits.shape[1]
    offsets = np.zeros(n_classes)
    rows = [(labels == c) & (weights > 0) for c in range(n_classes)]
    base_recall = [
        float((weights[m] * (base[m] == c)).sum() / weights[m].sum()) if m.any() else 0.0
        for c, m in enumerate(rows)
    ]
    for _ in range(400):
        pred = (logits + offsets).argmax(axis=1)
        losses = [
            base_recall[c] - float((weights[m] * (pred[m] == c)).sum() / weights[m].sum()) if m.any() else 0.0
            for c, m in enumerate(rows)
        ]
        worst = int(np.argmax(losses))
        if losses[worst] <= drop:
            break
        offsets[worst] += 0.05
    return offsets


def _logits(
    probs: np.ndarray, features: np.ndarray, fitted: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    wm, vm, b = fitted
    lp = np.log(np.clip(probs.astype(np.float64), LOG_FLOOR, 1.0))
    out: np.ndarray = lp @ wm.T + features.astype(np.float64) @ vm.T + b
    return out


def fit_weights(fb: Feedback, policy: Policy) -> np.ndarray:
    """The weight each reading gets in a fit: collection rates, class balance, the per-person cap."""
    w, _ = feedback_weights(fb, policy)
    w = balance_classes(w, fb.labels, fb.probs.shape[1], policy.balance)
    return cap_people(w, fb.people, policy.cap)


def fit(
    fb: Feedback,
    classes: Sequence[str],
    policy: Policy = Policy(),
    version: str = "fit",
    projection_sha256: str = "",
    weights: np.ndarray | None = None,
    start: Fitted | None = None,
) -> Adapter:
    """One adapter from all of ``fb``: weights, the fit, then the per-class recall floor measured
    leaving people out inside ``fb`` (``weights`` overrides :func:`fit_weights`; ``start`` is
    where the fit's search begins)."""
    w = fit_weights(fb, policy) if weights is None else weights
    fitted = fit_corrector(fb.probs, fb.features, fb.labels, w, policy.prior, policy.prior_head, start)
    people = np.unique(fb.people[w > 0])
    if policy.floor < 1 and len(people) >= 2:
        keep = (fb.labels >= 0) & (w > 0)
        n_eff = float(w[keep].sum() ** 2 / max((w[keep] ** 2).sum(), 1e-12))
        if n_eff >= policy.in_sample_above:  # ~1,000 numbers on this many readings: in ≈ out of sample
            oof = _logits(fb.probs, fb.features, fitted)
        else:
            oof = np.zeros((len(fb), len(classes)))
            for rows in people_folds(fb.people, policy.inner_folds, seed=1):
                train = np.setdiff1d(np.arange(len(fb)), rows)
                inner = fit_corrector(
                    fb.probs[train],
                    fb.features[train],
                    fb.labels[train],
                    w[train],
                    policy.prior,
                    policy.prior_head,
                    start=fitted,
                )
                oof[rows] = _logits(fb.probs[rows], fb.features[rows], inner)
        offsets = recall_floor(
            oof[keep], fb.probs[keep].argmax(axis=1), fb.labels[keep], w[keep], policy.floor
        )
        fitted = (fitted[0], fitted[1], fitted[2] + offsets)
    weight, head, bias = fitted
    return Adapter(
        version,
        tuple(classes),
        weight,
        bias,
        head if head.shape[1] else None,
        projection_sha256 if head.shape[1] else "",
    )


def people_folds(people: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Row indices of each fold; every person's rows in one fold (a fixed, seeded shuffle)."""
    names = np.unique(people)
    order = np.random.default_rng(seed).permutation(len(names))
    k = max(2, min(folds, len(names)))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    which = np.array([fold_of[p] for p in people]) if len(people) else np.zeros(0, dtype=int)
    return [np.flatnonzero(which == f) for f in range(k)]
