"""Weight averaging: a run's last epochs (SWA-style), or two models along the line between them.

``moodring average RUN_DIR --last K`` reads the per-epoch weights that
``moodring train --keep-epochs`` kept in ``RUN_DIR/epochs/``, averages the last K,
recomputes every BatchNorm's running mean/variance with one pass over the (augmented)
training set, measures val accuracy and exports weights + manifest like ``train`` does.
Averaging the tail of a decaying schedule lands nearer the centre of the minimum the
run was circling, which often generalises a little better than any single epoch.

``moodring interpolate BASE TUNED --alpha A`` exports (1 - A) x BASE + A x TUNED, every
weight and BatchNorm statistic (WiSE-FT, Wortsman et al. 2022: a fine-tune interpolated
with the model it started from often keeps the base's accuracy and much of the fine-tune's
robustness to a shifted input). BASE is an exported model directory; TUNED is another, or
one epoch's weights kept by ``moodring train --keep-epochs`` (``RUN/epochs/epoch-N.pt``).
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import click
import torch
from torch import nn

from inference.api.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from inference.cli_options import EXISTING_DIR, OUT_DIR, share_option, threads_option, val_option
from inference.serve.checkpoint import load_model
from inference.serve.model import build_resnet50
from inference.serve.precision import resolve_bf16
from inference.training.augment import augment
from inference.training.config import TrainConfig, config_from_checkpoint, subcommand_args
from inference.training.data import FER2013_CLASSES, load_faces
from inference.training.export import export_model, write_weights
from inference.training.predict import predict_probs
from inference.training.train import load_sets, norm_stats

log = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"epoch-(\d+)\.pt$")


def kept_epochs(run_dir: Path) -> dict[int, Path]:
    """The per-epoch weight files of a run, by 1-based epoch number."""
    folder = run_dir / "epochs"
    found = {}
    for path in folder.glob("epoch-*.pt") if folder.is_dir() else ():
        match = _EPOCH_FILE.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def average_states(
    states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """Mean (or ``weights``-weighted sum) of the floating-point tensors; integer buffers (BN
    batch counters) from the last state."""
    if not states:
        raise ValueError("nothing to average")
    if weights is None:
        weights = [1.0 / len(states)] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"{len(weights)} weights for {len(states)} states")
    w = torch.tensor(weights, dtype=torch.float32)
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            stacked = torch.stack([s[key].float() for s in states])
            out[key] = torch.tensordot(w, stacked, dims=1)
        else:
            out[key] = last.clone()
    return out


@torch.no_grad()
def update_bn(
    model: nn.Module,
    images: torch.Tensor,
    cfg: TrainConfig,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 256,
) -> None:
    """Recompute BatchNorm running statistics: a cumulative average over one pass of ``images``.

    The batches are augmented as in training (at the serving size), as
    ``torch.optim.swa_utils.update_bn`` would see them from a training loader.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = {}
    for bn in norms:
        bn.reset_running_stats()
        momenta[bn] = bn.momentum
        bn.momentum = None  # cumulative moving average over the whole pass
    gen = torch.Generator().manual_seed(cfg.seed)
    was_training = model.training
    model.train()
    perm = torch.randperm(images.shape[0], generator=gen)
    for start in range(0, images.shape[0], batch_size):
        x = augment(images[perm[start : start + batch_size]], cfg.eval_size, cfg, mean, std, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            model(x)
    for bn in norms:
        bn.momentum = momenta[bn]
    model.train(was_training)


def average_run(run_dir: Path, out_dir: Path, last: int, command: str = "") -> ModelManifest:
    """Average the last ``last`` kept epochs of ``run_dir`` and export the result to ``out_dir``."""
    ckpt_path = run_dir / "last.pt"
    if not ckpt_path.is_file():
        raise click.UsageError(f"{ckpt_path} not found: RUN_DIR must be a `moodring train` output directory")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    epochs = kept_epochs(run_dir)
    if len(epochs) < last:
        raise click.UsageError(
            f"{run_dir / 'epochs'} holds {len(epochs)} epochs, --last {last} needs more "
            "(train with --keep-epochs)"
        )
    chosen = list(epochs)[-last:]
    cfg = config_from_checkpoint(ckpt["config"], command)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    states = [torch.load(epochs[e], map_location="cpu", weights_only=True) for e in chosen]
    model = build_resnet50(len(FER2013_CLASSES))
    model.load_state_dict(average_states(states))
    model = model.to(memory_format=torch.channels_last)
    del states
    train_set, val_set = load_sets(cfg)
    mean, std = norm_stats(train_set)
    update_bn(model, train_set.images, cfg, mean, std)
    probs = predict_probs(model, val_set.images, size=cfg.eval_size, mean=mean, std=std, bf16=cfg.bf16)
    val_acc = float((probs.argmax(1) == val_set.labels.numpy()).mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = export_model(model, out_dir, cfg, mean, std, val_acc)
    note = f"weights averaged over epochs {chosen[0]}-{chosen[-1]} of {run_dir}, BN re-estimated"
    manifest = manifest.model_copy(update={"notes": note})
    manifest.dump(out_dir / MANIFEST_FILE)
    log.info(
        "averaged epochs %s: val %.4f (best single epoch %.4f) in %.0f s -> %s",
        chosen,
        val_acc,
        ckpt["best_acc"],
        time.perf_counter() - t0,
        out_dir,
    )
    return manifest


@click.command("average")
@click.argument("run_dir", type=EXISTING_DIR)
@click.option("--last", type=click.IntRange(min=1), default=5, show_default=True, help="Epochs to average.")
@click.option(
    "--out-dir",
    type=OUT_DIR,
    default=None,
    help="Where to export (default: RUN_DIR/averaged).",
)
def average_command(run_dir: Path, last: int, out_dir: Path | None) -> None:
    """Average a training run's last epochs (needs `moodring train --keep-epochs`) and export it."""
    from inference.api.logsetup import configure_logging

    configure_logging()
    argv = subcommand_args()
    average_run(run_dir, out_dir or run_dir / "averaged", last, "moodring average " + shlex.join(argv))


# What two models must share for their weights to be mixed and served with one manifest.
_SAME_INPUT = ("architecture", "stem", "classes", "input_size", "in_channels", "mean", "std")


def load_state(source: Path, base: ModelManifest) -> dict[str, torch.Tensor]:
    """The weights of an exported model directory (same inputs as ``base``) or a kept epoch file."""
    if source.is_dir():
        model, manifest = load_model(source)
        differ = [f for f in _SAME_INPUT if getattr(manifest, f) != getattr(base, f)]
        if differ:
            raise click.UsageError(f"{source} differs from the base model in {', '.join(differ)}")
        return model.state_dict()
    state: dict[str, torch.Tensor] = torch.load(source, map_location="cpu", weights_only=True)
    return state


def interpolate_models(
    base_dir: Path, tuned: Path, alpha: float, out_dir: Path, val: Path, command: str = ""
) -> ModelManifest:
    """Export (1 - alpha) x base + alpha x tuned to ``out_dir``, with its single-view accuracy on ``val``.

    The manifest is the base's (temperature and calm-face alpha included) with the new
    weights, accuracy, command and a note; 10-view accuracy is left to ``moodring evaluate``.
    """
    model, manifest = load_model(base_dir)
    state = average_states([model.state_dict(), load_state(tuned, manifest)], [1.0 - alpha, alpha])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise click.UsageError(f"{tuned} does not fit the base model: {exc}") from exc
    val_set = load_faces(val, manifest.input_size, manifest.classes)
    probs = predict_probs(model, val_set.images, manifest, bf16=resolve_bf16(None), temperature=1.0)
    val_acc = float((probs.argmax(1) == val_set.labels.numpy()).mean())
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = write_weights(model, out_dir)
    manifest = manifest.model_copy(
        update={
            "weights_file": weights.name,
            "weights_sha256": sha256_file(weights),
            "train_command": command,
            "val_accuracy": round(val_acc, 4),
            "val_accuracy_tta": None,
            "notes": f"weights interpolated: {1.0 - alpha:g} x {base_dir} + {alpha:g} x {tuned} "
            f"(base: {manifest.train_command})",
        }
    )
    manifest.dump(out_dir / MANIFEST_FILE)
    log.info("interpolated %s -> %s at alpha %.2f: val %.4f -> %s", base_dir, tuned, alpha, val_acc, out_dir)
    return manifest


@click.command("interpolate")
@click.argument("base", type=EXISTING_DIR)
@click.argument("tuned", type=click.Path(exists=True, path_type=Path))
@share_option("--alpha", default=0.5, help_text="The tuned model's share: 0 = BASE, 1 = TUNED.")
@click.option("--out-dir", type=OUT_DIR, required=True)
@val_option("ImageFolder tree whose single-view accuracy goes into the manifest.")
@threads_option
def interpolate_command(
    base: Path, tuned: Path, alpha: float, out_dir: Path, val: Path, threads: int
) -> None:
    """Export a model between BASE (an exported model) and TUNED (a model or a kept epoch's weights)."""
    from inference.api.logsetup import configure_logging

    configure_logging()
    torch.set_num_threads(threads)
    argv = subcommand_args()
    interpolate_models(base, tuned, alpha, out_dir, val, "moodring interpolate " + shlex.join(argv))
