"""Per-user re-weighting of the classes: the correction prior and the calm-face baseline.

Both are weights on the model's probabilities of the sender's face, p'(c) ∝ p(c)·w(c), with

    w(c) = prior(c) · baseline(c)^(-α)

``prior`` comes from the user's corrections (``bot.store.UserStore.prior``), ``baseline`` is the
averaged reading of their calm face, and α (the manifest's ``baseline_alpha``) says how much of
the calm face's lean is divided out: a face that reads "sad" at rest has its "sad" scaled down
by that lean on every later photo. The two multiply because they are independent evidence
(what the user told us; how their resting face reads). One function, used by serving (the
Grad-CAM pass) and by ``moodring evaluate --baseline-by``, so what is measured is what is served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# A calm reading's probability is floored here before the power, so a class the calm face
# never showed can't get an unbounded boost.
BASELINE_FLOOR = 0.01


@dataclass(frozen=True, slots=True)
class Personal:
    """What a job carries about its sender: correction weights and calm-face probabilities."""

    prior: Mapping[str, float] = field(default_factory=dict)
    baseline: Mapping[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.prior or self.baseline)


def personal_weights(
    classes: Sequence[str],
    prior: Mapping[str, float] | None = None,
    baseline: Mapping[str, float] | None = None,
    alpha: float = 1.0,
) -> np.ndarray | None:
    """Weights (classes,) for p'(c) ∝ p(c)·w(c), or None when there is nothing to apply."""
    if not prior and not baseline:
        return None
    w = np.ones(len(classes), dtype=np.float64)
    if prior:
        w *= np.array([max(0.0, float(prior.get(c, 1.0))) for c in classes])
    if baseline and alpha:
        calm = np.array([float(baseline.get(c, 1.0 / len(classes))) for c in classes])
        calm = np.clip(calm / max(calm.sum(), 1e-12), BASELINE_FLOOR, None)
        w *= calm ** (-alpha)
    return w


def reweight(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Apply weights to probability rows (N, C) or one row (C,), renormalised."""
    out = probs * weights
    total = out.sum(axis=-1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), probs)
