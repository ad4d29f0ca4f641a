"""What a training run is: its config (checkpoint-safe, compared across resumes) and the command
that started it."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one run; stored in the checkpoint so a resume can't drift."""

    data: str
    val: str
    out_dir: str
    schedule: tuple[tuple[int, int], ...] = ((32, 16), (40, 10), (48, 10))
    eval_size: int = 48
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_frac: float = 0.15
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.85, 1.15)
    translate: float = 0.1
    jitter: float = 0.2
    erase_p: float = 0.5
    mix_p: float = 0.0
    photo_p: float = 0.0  # each photo-path degradation's probability (inference.training.degrade)
    ema_decay: float = 0.0
    threads: int = 2
    seed: int = 0
    limit: int | None = None
    bf16: bool = True
    init_from: str | None = None
    # knowledge distillation (issue 19): exported model directories whose averaged probabilities
    # on each augmented batch are mixed into the targets with weight ``distill``
    teachers: tuple[str, ...] = ()
    distill: float = 0.0
    # "clean": the teachers see each face before the photo-path degradations (same geometry,
    # jitter, erasing and mixing), so the student learns to read a degraded face as the teachers
    # read the clean one; "same": the teachers see exactly the student's input
    teacher_view: Literal["same", "clean"] = "same"
    command: str = field(default="")

    @property
    def epochs(self) -> int:
        return sum(n for _, n in self.schedule)

    def size_at(self, epoch: int) -> int:
        """Input size used in a given (0-based) epoch: progressive resizing."""
        seen = 0
        for size, n in self.schedule:
            seen += n
            if epoch < seen:
                return size
        return self.schedule[-1][0]


def config_from_checkpoint(plain: dict[str, object], command: str = "") -> TrainConfig:
    """Rebuild the :class:`TrainConfig` stored in a checkpoint by :func:`plain_config`."""
    values = dict(plain)
    values["schedule"] = tuple((int(a), int(b)) for a, b in values["schedule"])  # type: ignore[attr-defined]
    values["scale"] = tuple(values["scale"])  # type: ignore[arg-type]
    values["teachers"] = tuple(values.get("teachers", ()))  # type: ignore[arg-type]
    # Checkpoints from before a field existed get its default, which is what they ran with.
    return TrainConfig(**values, command=command)  # type: ignore[arg-type]


def plain_config(cfg: TrainConfig) -> dict[str, object]:
    """Config as JSON-like primitives (checkpoint-safe, compares equal across resumes)."""
    plain = asdict(cfg)
    plain.pop("command")
    plain["schedule"] = [list(s) for s in cfg.schedule]
    plain["scale"] = list(cfg.scale)
    plain["teachers"] = list(cfg.teachers)
    return plain


def subcommand_args(argv: list[str] | None = None) -> list[str]:
    """The options after the sub-command (``moodring train …``, or ``python -m`` of a training
    module, e.g. ``inference.training.train_cli …``).

    Judged by the program's own name: a checkout whose path holds "moodring"
    (``/src/moodring/inference/training/train.py``) is still the module form.
    """
    argv = sys.argv if argv is None else argv
    return argv[2:] if Path(argv[0]).name == "moodring" else argv[1:]
