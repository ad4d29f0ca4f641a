"""The community adapter: a small corrector on top of the network's output, fitted per deployment.

p'(·) = softmax(W · log p + V · x + b), with p the network's own probabilities of one face (after
its temperature), x the face's projected features (:mod:`inference.serve.projection`: 128 numbers
from a fixed projection shipped with the model), W a classes × classes matrix, V a classes × 128
head and b a bias. With no head (V empty) it is a 56-number corrector of the probabilities alone.
The identity (W = I, V = 0, b = 0) gives p back unchanged. It is fitted from the readings a deployment's users
confirmed or corrected (``moodring adapt fit``, :mod:`inference.training.adapt`) and applied by
the worker to every face *before* the sender's prior and calm face, so the label, the class
Grad-CAM explains, the reason and the music all follow it.

No torch here: numpy only, so the fitter and the worker's poller share it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from inference.api.errors import ModelError

# Probabilities are floored here before the log, so a class the network gives ~0 can't send the
# corrector's input to -inf (and one wrong digit in the 7th decimal can't swing a reading).
LOG_FLOOR = 1e-4
FORMAT = "moodring.adapter/1"


class AdapterError(ModelError):
    """An adapter file or record that can't be used with this model."""


class AdapterFile(BaseModel):
    """The adapter as JSON (a file, or one version in Redis): numbers and where they came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["moodring.adapter/1"] = "moodring.adapter/1"
    kind: Literal["logit-corrector"] = "logit-corrector"
    version: str = Field(min_length=1, max_length=64)
    classes: tuple[str, ...]
    weight: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    head: tuple[tuple[float, ...], ...] = ()  # (classes, dims) on the projected features; () none
    projection_sha256: str = ""  # the projection the head was fitted on (must be the model's)
    fitted_at: float = 0.0
    readings: int = 0
    people: int = 0
    source: str = ""  # "redis" (users' labelled readings) or the folder it was fitted from
    validation: dict[str, Any] = Field(default_factory=dict)
    activated: bool = False
    reason: str = ""  # why it was (not) activated

    @field_validator("weight", "bias", "head")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        flat = [x for row in v for x in row] if v and isinstance(v[0], tuple) else list(v)
        if not all(math.isfinite(x) for x in flat):
            raise ValueError("adapter numbers must be finite")
        return v


@dataclass(frozen=True, slots=True)
class Adapter:
    """A fitted corrector: ``apply`` maps probability rows to corrected probability rows."""

    version: str
    classes: tuple[str, ...]
    weight: np.ndarray  # (C, C)
    bias: np.ndarray  # (C,)
    head: np.ndarray | None = None  # (C, D) on projected features, or None
    projection_sha256: str = ""
    info: AdapterFile | None = field(default=None, compare=False)

    @classmethod
    def identity(cls, classes: Sequence[str], version: str = "identity") -> Adapter:
        n = len(classes)
        return cls(version, tuple(classes), np.eye(n), np.zeros(n))

    @property
    def dims(self) -> int:
        """How many projected numbers per face the head reads (0: none)."""
        return 0 if self.head is None else int(self.head.shape[1])

    def apply(self, probs: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Corrected probabilities for rows (N, C) or one row (C,), as float64.

        ``features`` are the rows' projected features (N, D); without them a head reads zeros,
        which is the average FER2013 face (used for a calm face, of which only probabilities are
        kept).
        """
        x = np.log(np.clip(np.asarray(probs, dtype=np.float64), LOG_FLOOR, 1.0))
        z = x @ self.weight.T + self.bias
        if self.head is not None and features is not None:
            z = z + np.asarray(features, dtype=np.float64) @ self.head.T
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
        return out

    def apply_dict(self, probs: Mapping[str, float]) -> dict[str, float]:
        """``apply`` on one reading given by class name (a class it doesn't name counts 0)."""
        row = np.array([float(probs.get(c, 0.0)) for c in self.classes])
        total = row.sum()
        row = row / total if total > 0 else np.full(len(self.classes), 1.0 / len(self.classes))
        return {c: float(v) for c, v in zip(self.classes, self.apply(row), strict=True)}

    def to_file(self, **meta: Any) -> AdapterFile:
        """The adapter as its JSON model; ``meta`` fills (or overrides) the descriptive fields."""
        base = self.info.model_dump() if self.info is not None else {}
        base |= {
            "version": self.version,
            "classes": self.classes,
            "weight": tuple(tuple(float(x) for x in row) for row in self.weight),
            "bias": tuple(float(x) for x in self.bias),
            "head": () if self.head is None else tuple(tuple(float(x) for x in row) for row in self.head),
            "projection_sha256": self.projection_sha256,
        }
        return AdapterFile.model_validate(base | meta)

    def to_json(self, **meta: Any) -> str:
        return self.to_file(**meta).model_dump_json()

    @classmethod
    def from_file(cls, info: AdapterFile, classes: Sequence[str] | None = None) -> Adapter:
        """Build from its JSON model; ``classes`` (the served model's) must match its own.

        Raises:
            AdapterError: another class list, or numbers of the wrong shape.
        """
        n = len(info.classes)
        weight = np.array(info.weight, dtype=np.float64)
        bias = np.array(info.bias, dtype=np.float64)
        if weight.shape != (n, n) or bias.shape != (n,):
            raise AdapterError(
                f"adapter {info.version}: weight {weight.shape} / bias {bias.shape} for {n} classes"
            )
        head = np.array(info.head, dtype=np.float64) if info.head else None
        if head is not None and (head.ndim != 2 or head.shape[0] != n or not info.projection_sha256):
            raise AdapterError(f"adapter {info.version}: a head of shape {head.shape} without its projection")
        adapter = cls(info.version, info.classes, weight, bias, head, info.projection_sha256, info)
        if classes is not None:
            adapter.check_classes(classes)
        return adapter

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raise :class:`AdapterError` unless it was fitted for these classes, in this order."""
        if tuple(classes) != self.classes:
            raise AdapterError(
                f"adapter {self.version} is for classes {list(self.classes)}, not {list(classes)}"
            )

    def check(self, classes: Sequence[str], projection_sha256: str) -> None:
        """Raise :class:`AdapterError` unless it fits a model with these classes and projection."""
        self.check_classes(classes)
        self.check_projection(projection_sha256)

    def check_projection(self, sha256: str) -> None:
        """Raise :class:`AdapterError` unless the head (if any) was fitted on this projection."""
        if self.head is not None and self.projection_sha256 != sha256:
            raise AdapterError(
                f"adapter {self.version} was fitted on projection {self.projection_sha256[:12]}, "
                f"the model has {sha256[:12] or 'none'}"
            )

    @classmethod
    def from_json(cls, text: str | bytes, classes: Sequence[str] | None = None) -> Adapter:
        """Parse an adapter (file or Redis record).

        Raises:
            AdapterError: not an adapter, or not for these classes.
        """
        try:
            info = AdapterFile.model_validate(json.loads(text))
        except (ValueError, TypeError) as exc:
            raise AdapterError(f"not a moodring adapter: {str(exc)[:200]}") from exc
        return cls.from_file(info, classes)
