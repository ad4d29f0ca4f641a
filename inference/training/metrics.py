"""Classification metrics in plain numpy: accuracy, per-class P/R/F1, confusion, ECE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np


@dataclass(frozen=True, slots=True)
class ClassReport:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``moodring evaluate`` prints; classes absent from the labels are left out of macro-F1."""

    accuracy: float
    macro_f1: float
    ece: float
    n: int
    per_class: tuple[ClassReport, ...]
    confusion: list[list[int]]
    classes: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "ece": self.ece,
            "n": self.n,
            "classes": list(self.classes),
            "per_class": {
                c.name: {"precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support}
                for c in self.per_class
            },
            "confusion": self.confusion,
        }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (top-1 confidence vs accuracy)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(ece)


def classification_report(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Report:
    """Build a :class:`Report` from probabilities (N, C) and integer labels (N,)."""
    k = len(classes)
    preds = probs.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = []
    f1s = []
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        support = int(confusion[i].sum())
        predicted = int(confusion[:, i].sum())
        precision = float(tp / predicted) if predicted else 0.0
        recall = float(tp / support) if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(ClassReport(name, precision, recall, f1, support))
        if support:
            f1s.append(f1)
    return Report(
        accuracy=float((preds == labels).mean()) if len(labels) else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        ece=expected_calibration_error(probs, labels) if len(labels) else 0.0,
        n=len(labels),
        per_class=tuple(per_class),
        confusion=confusion.tolist(),
        classes=tuple(classes),
    )


def format_report(report: Report) -> str:
    """Human-readable table: headline numbers, per-class P/R/F1 and the confusion matrix."""
    lines = [
        f"images: {report.n}   accuracy: {report.accuracy:.4f}   macro-F1: {report.macro_f1:.4f}"
        f"   ECE: {report.ece:.4f}",
        "",
        f"{'class':10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for c in report.per_class:
        lines.append(f"{c.name:10} {c.precision:9.3f} {c.recall:7.3f} {c.f1:6.3f} {c.support:8d}")
    short = [c[:4] for c in report.classes]
    lines += [
        "",
        "confusion (rows = true, cols = predicted)",
        f"{'':10} " + " ".join(f"{s:>5}" for s in short),
    ]
    for name, row in zip(report.classes, report.confusion, strict=True):
        lines.append(f"{name:10} " + " ".join(f"{v:5d}" for v in row))
    return "\n".join(lines)
