"""Click pieces several ``moodring`` commands share: the kinds of path they take and the options
that mean the same thing everywhere (which model, which detector, which adapter, FER2013's
validation split). Torch-free, so ``moodring --help`` stays light."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
OUT_FILE = click.Path(dir_okay=False, path_type=Path)
OUT_DIR = click.Path(file_okay=False, path_type=Path)
FER_VAL = Path("../shared/datasets/fer2013/val")
FER_TRAIN = Path("../shared/datasets/fer2013/train")
F = TypeVar("F", bound=Callable[..., Any])

model_dir_option = click.option(
    "--model-dir", type=OUT_DIR, default=None, help="An exported model directory (default: the served model)."
)
adapter_option = click.option(
    "--adapter",
    "adapter_file",
    type=EXISTING_FILE,
    default=None,
    help="A community adapter file (moodring adapt fit --from ... --out FILE) applied to every face.",
)
threads_option = click.option("--threads", default=2, show_default=True, help="torch intra-op threads.")
json_flag = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def val_option(help_text: str, dest: str = "val", must_exist: bool = True) -> Callable[[F], F]:
    """``--val``: labelled faces (ImageFolder), FER2013's PublicTest split unless told."""
    kind = EXISTING_DIR if must_exist else click.Path(path_type=Path)
    return click.option("--val", dest, type=kind, default=FER_VAL, show_default=True, help=help_text)


def share_option(*names: str, default: float, help_text: str) -> Callable[[F], F]:
    """A share or probability in [0, 1] (``--alpha``, ``--mix``, ``--distill``...)."""
    return click.option(
        *names, type=click.FloatRange(0.0, 1.0), default=default, show_default=True, help=help_text
    )


def train_option(help_text: str, must_exist: bool = True) -> Callable[[F], F]:
    """``--data``: training faces (ImageFolder), FER2013's Training split unless told."""
    kind = EXISTING_DIR if must_exist else click.Path(path_type=Path)
    return click.option("--data", type=kind, default=FER_TRAIN, show_default=True, help=help_text)
