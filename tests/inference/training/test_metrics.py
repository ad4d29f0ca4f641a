from __future__ import annotations

import numpy as np
import pytest

from inference.training.metrics import classification_report, expected_calibration_error, format_report


def test_report_on_known_confusion() -> None:
    classes = ("a", "b", "c")
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    probs = np.eye(3)[preds] * 0.9 + 0.1 / 3
    r = classification_report(probs, labels, classes)
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.confusion == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    a = r.per_class[0]
    assert (a.precision, a.recall) == (pytest.approx(0.5), pytest.approx(0.5))
    assert r.macro_f1 == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert "macro-F1" in format_report(r)


def test_macro_f1_ignores_classes_absent_from_labels() -> None:
    labels = np.array([0, 0])
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]])
    r = classification_report(probs, labels, ("a", "b", "c"))
    assert r.macro_f1 == pytest.approx(1.0)


def test_ece_zero_when_confidence_matches_accuracy() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 0])) == pytest.approx(1.0)
