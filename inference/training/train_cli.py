"""``moodring train``: the command line of a training run."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Literal

import click

from inference.cli_options import EXISTING_DIR, share_option, threads_option, train_option, val_option
from inference.training.config import TrainConfig, plain_config, subcommand_args
from inference.training.train import train

log = logging.getLogger(__name__)


def _parse_schedule(text: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple((int(a), int(b)) for a, b in (part.split(":") for part in text.split(",")))
    except ValueError as exc:
        raise click.BadParameter("use SIZE:EPOCHS[,SIZE:EPOCHS...], e.g. 32:10,40:7,48:5") from exc
    if not pairs or any(s < 16 or e < 1 for s, e in pairs):
        raise click.BadParameter("sizes must be >= 16 and epochs >= 1")
    return pairs


@click.command("train")
@train_option("ImageFolder tree of 48x48 training faces.", must_exist=False)
@val_option("ImageFolder tree used for model selection.", must_exist=False)
@click.option(
    "--out-dir", type=click.Path(path_type=Path), default=Path("runs/fer-resnet50"), show_default=True
)
@click.option(
    "--schedule",
    default="32:16,40:10,48:10",
    show_default=True,
    help="Progressive resizing: SIZE:EPOCHS pairs, run in order.",
)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Peak one-cycle learning rate (AdamW).")
@threads_option
@click.option("--limit", type=int, default=None, help="Use only N images of each split (smoke runs).")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-bf16", is_flag=True, help="Train in fp32 instead of bf16 autocast.")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint in --out-dir.")
@click.option("--keep-epochs", is_flag=True, help="Also keep every epoch's weights (for `moodring average`).")
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu, cuda, cuda:N or auto (a GPU when torch sees one).",
)
@click.option(
    "--save-every", default=1, show_default=True, help="Write the resumable checkpoint every N epochs."
)
@share_option(
    "--mix",
    "mix_p",
    default=0.0,
    help_text="Share of faces mixed with another (half mixup, half CutMix; soft targets). 0 = off.",
)
@share_option(
    "--photo-aug",
    "photo_p",
    default=0.0,
    help_text="Probability of each photo-path degradation (resolution, blur, JPEG, exposure). 0 = off.",
)
@click.option(
    "--teacher",
    "teachers",
    multiple=True,
    type=EXISTING_DIR,
    help="An exported model directory to distil from (repeat for an ensemble; their probabilities "
    "are averaged).",
)
@share_option(
    "--distill",
    default=0.7,
    help_text="With --teacher: the teachers' share of the target (the labels keep the rest).",
)
@click.option(
    "--teacher-view",
    type=click.Choice(["same", "clean"]),
    default="same",
    show_default=True,
    help="With --teacher: what the teachers see, the student's input or the same face before the "
    "--photo-aug degradations.",
)
@click.option(
    "--ema",
    "ema_decay",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Keep an exponential moving average of the weights (e.g. 0.999) and select/export it. 0 = off.",
)
@click.option(
    "--init-from",
    type=EXISTING_DIR,
    default=None,
    help="Start from an exported model directory (manifest.json + weights) instead of random weights.",
)
def train_command(
    data: Path,
    val: Path,
    out_dir: Path,
    schedule: str,
    batch_size: int,
    lr: float,
    threads: int,
    limit: int | None,
    seed: int,
    no_bf16: bool,
    fresh: bool,
    keep_epochs: bool,
    device: str,
    save_every: int,
    mix_p: float,
    photo_p: float,
    teachers: tuple[Path, ...],
    distill: float,
    teacher_view: Literal["same", "clean"],
    ema_decay: float,
    init_from: Path | None,
) -> None:
    """Train the emotion model on FER2013 (resumable; logs one line per epoch)."""
    from inference.api.logsetup import configure_logging

    configure_logging()
    cfg = TrainConfig(
        data=str(data),
        val=str(val),
        out_dir=str(out_dir),
        schedule=_parse_schedule(schedule),
        batch_size=batch_size,
        lr=lr,
        threads=threads,
        limit=limit,
        seed=seed,
        bf16=not no_bf16,
        mix_p=mix_p,
        photo_p=photo_p,
        ema_decay=ema_decay,
        init_from=str(init_from) if init_from else None,
        teachers=tuple(str(t) for t in teachers),
        distill=distill if teachers else 0.0,
        teacher_view=teacher_view if teachers else "same",
        command="moodring train " + shlex.join(subcommand_args()),
    )
    log.info("config %s", plain_config(cfg))
    train(cfg, resume=not fresh, keep_epochs=keep_epochs, device=device, save_every=max(1, save_every))


def main() -> None:
    """Entry point for ``python -m inference.training.train_cli``."""
    train_command(prog_name="python -m inference.training.train_cli")


if __name__ == "__main__":
    main()
