"""Train the emotion model on a lent GPU inside a fixed time budget, then export it.

python -m inference.training.gpu --budget-s 520 --out OUT [--batch-size 256 --lr 1.5e-3 --seed 0]
    [--mix 0.5 --ema 0.999] [--packed .gpudata/fer2013.npz]

A lent GPU comes for minutes, not hours, and no second try, so the run is sized by
measurement instead of by guess:

1. time the real training step (same model, batch size and augmentation, on the GPU)
   and one validation pass; print them;
2. pick E = the number of 48 px epochs that fits what is left of the budget (capped by
   ``--max-epochs``), and run exactly ``moodring train --device cuda --schedule 48:E …``
   as a subprocess, so the manifest records a command anyone with a GPU can rerun;
3. if that estimate was wrong and the deadline comes first, stop the run and export its
   best-on-val weights anyway (said in the output and in ``probe.json``);
4. measure val accuracy with 10-view TTA on the GPU, and split ``model.safetensors``
   into parts of at most 15 MiB (the lease returns files of at most 16 MiB) next to
   the manifest, the train log and ``probe.json`` in OUT.

With ``--teachers N`` (issue 19's distillation) step 2 runs in two phases: N teachers of seeds
seed+1..seed+N train at once on the one GPU in ``--teacher-share`` of the time, then the served
student trains on their averaged probabilities (``moodring train --teacher DIR ... --distill``)
in the rest; the teachers' 10-view ensemble accuracy (the ceiling) is reported beside the
student's. A teacher that misses its deadline is left out. ``--teacher-dir DIR`` adds an exported
model that already exists (the committed weights, say: "born-again" self-distillation needs no
teacher phase, so the student gets the whole lease), and ``--teacher-view clean`` shows the
teachers each face before the ``--photo-aug`` degradations.

Join the parts with ``cat model.safetensors.part* > model.safetensors``; the manifest's
sha256 checks the result. The lent machine gets the checkout only: send FER2013 as one
archive made by ``inference/training/pack.py`` and name it with ``--packed``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from inference.serve.checkpoint import load_model
from inference.serve.model import build_resnet50, param_groups
from inference.training.config import TrainConfig
from inference.training.data import FER2013_CLASSES, FaceSet, load_faces
from inference.training.export import export_model
from inference.training.pack import unpack
from inference.training.predict import Tta, predict_probs
from inference.training.step import Ema, training_step
from inference.training.train import norm_stats

PART_BYTES = 15 * 2**20


def probe(
    train_set: FaceSet,
    val_set: FaceSet,
    cfg: TrainConfig,
    dev: torch.device,
    steps: int = 30,
) -> dict[str, float]:
    """Seconds per training step (:func:`inference.training.step.training_step`, with the run's
    mixing and EMA) and per epoch's validation (two passes with an EMA) on ``dev``."""
    torch.backends.cudnn.benchmark = True

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    mean, std = norm_stats(train_set)
    batch_size, bf16 = cfg.batch_size, cfg.bf16
    images, labels = train_set.images.to(dev), train_set.labels.to(dev)
    model = build_resnet50(len(FER2013_CLASSES)).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    gen = torch.Generator(device=dev).manual_seed(0)
    ema = Ema(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    def step() -> None:
        idx = torch.randint(0, images.shape[0], (batch_size,), device=dev, generator=gen)
        training_step(model, opt, criterion, images[idx], labels[idx], 48, cfg, mean, std, gen, ema)

    for _ in range(10):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    step_s = (time.perf_counter() - t0) / steps
    predict_probs(model, val_set.images, size=48, mean=mean, std=std, bf16=bf16)
    t0 = time.perf_counter()
    predict_probs(model, val_set.images, size=48, mean=mean, std=std, bf16=bf16)
    eval_s = (time.perf_counter() - t0) * (2 if ema is not None else 1)
    return {
        "step_s": step_s,
        "eval_s": eval_s,
        "images_per_s": batch_size / step_s,
        "epoch_s": (train_set.images.shape[0] // batch_size) * step_s + eval_s,
    }


def split(path: Path, out: Path) -> list[Path]:
    """Cut ``path`` into numbered parts of at most PART_BYTES in ``out``."""
    data = path.read_bytes()
    parts = []
    for i in range(0, len(data), PART_BYTES):
        part = out / f"{path.name}.part{i // PART_BYTES}"
        part.write_bytes(data[i : i + PART_BYTES])
        parts.append(part)
    return parts


def run_teachers(
    args: argparse.Namespace,
    train_cmd: Callable[[int, int, Path, list[str]], list[str]],
    epoch_s: float,
    deadline: float,
    numbers: dict[str, object],
) -> list[Path]:
    """Train ``args.teachers`` seeds at once; return the directories of those that exported."""
    n = args.teachers
    left = deadline - args.export_reserve_s - time.perf_counter() - 2 * args.startup_s
    budget = left * args.teacher_share
    # n runs share the GPU: plan as if each ran n times slower (a GPU busy with one small model
    # usually does better, so this errs towards finishing early)
    epochs = max(1, min(args.max_epochs, int(args.fit * budget / (epoch_s * n))))
    numbers["teacher_epochs"] = epochs
    until = time.perf_counter() + budget + args.startup_s
    procs = []
    for k in range(1, n + 1):
        out_dir = args.run_dir.with_name(f"{args.run_dir.name}-teacher{k}")
        log_file = (args.out / f"teacher{k}.log").open("w")
        cmd = train_cmd(epochs, args.seed + k, out_dir, [])
        print("teacher " + " ".join(cmd), flush=True)
        procs.append((out_dir, subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT), log_file))
    done = []
    for out_dir, proc, log_file in procs:
        try:
            proc.wait(timeout=max(1.0, until - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        if proc.returncode == 0 and (out_dir / "manifest.json").exists():
            done.append(out_dir)
        else:
            print(f"teacher {out_dir.name} did not finish: left out", flush=True)
    numbers["teachers_finished"] = len(done)
    return done


def ensemble_accuracy(dirs: list[Path], val_set: FaceSet, dev: torch.device, bf16: bool) -> float:
    """10-view accuracy of the teachers' averaged probabilities on ``val_set`` (the distillation ceiling)."""
    total = None
    for d in dirs:
        model, manifest = load_model(d)
        probs = predict_probs(model.to(dev), val_set.images, manifest, tta="ten", bf16=bf16)
        total = probs if total is None else total + probs
    assert total is not None
    return float((total.argmax(1) == val_set.labels.numpy()).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, required=True, help="wall seconds from start to files in OUT")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/fer2013/train"))
    ap.add_argument("--val", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/moodring-gpu-run"))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", type=float, default=0.0, help="moodring train --mix")
    ap.add_argument("--ema", type=float, default=0.0, help="moodring train --ema")
    ap.add_argument("--photo-aug", type=float, default=0.0, help="moodring train --photo-aug")
    ap.add_argument("--teachers", type=int, default=0, help="distil the served model from N seed teachers")
    ap.add_argument("--teacher-share", type=float, default=0.5, help="training time share of the teachers")
    ap.add_argument("--distill", type=float, default=0.7, help="moodring train --distill")
    ap.add_argument(
        "--teacher-dir",
        type=Path,
        action="append",
        default=[],
        help="an exported model to distil from as well (repeatable; e.g. inference/weights)",
    )
    ap.add_argument(
        "--teacher-view", choices=["same", "clean"], default="same", help="moodring train --teacher-view"
    )
    ap.add_argument(
        "--packed", type=Path, default=None, help="FER2013 archive from inference/training/pack.py"
    )
    ap.add_argument(
        "--fit", type=float, default=0.85, help="share of the measured time an epoch plan may fill"
    )
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    ap.add_argument("--no-bf16", action="store_true", help="fp32 (for a smoke test on a CPU without bf16)")
    ap.add_argument("--export-reserve-s", type=float, default=35.0, help="kept for export, TTA, split")
    ap.add_argument("--startup-s", type=float, default=25.0, help="the subprocess's imports + data load")
    args = ap.parse_args()
    start = time.perf_counter()
    deadline = start + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)

    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}", flush=True)
    t0 = time.perf_counter()
    if args.packed:
        unpacked = Path("/tmp/moodring-fer2013")
        print(f"unpacked {unpack(args.packed, unpacked)} files", flush=True)
        args.data, args.val = unpacked / "train", unpacked / "val"
    train_set, val_set = load_faces(args.data), load_faces(args.val)  # once: the probe and the export
    load_s = time.perf_counter() - t0
    # The run's settings, built once: the probe times them, a deadline export records them.
    run_cfg = TrainConfig(
        data=str(args.data),
        val=str(args.val),
        out_dir=str(args.run_dir),
        schedule=((48, 1),),  # the epoch count comes from the probe
        batch_size=args.batch_size,
        lr=args.lr,
        threads=4,
        seed=args.seed,
        bf16=not args.no_bf16,
        mix_p=args.mix,
        photo_p=args.photo_aug,
        ema_decay=args.ema,
    )
    numbers: dict[str, object] = {
        "load_s": load_s,
        **probe(train_set, val_set, run_cfg, dev),
    }
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # the probe's model and batches are gone; give the run their memory
    epoch_s = float(numbers["epoch_s"])  # type: ignore[arg-type]
    print("probe " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in numbers.items()}))

    def train_cmd(epochs: int, seed: int, out_dir: Path, extra: list[str]) -> list[str]:
        return [
            sys.executable, "-m", "inference.training.train_cli",
            "--device", args.device,
            "--schedule", f"48:{epochs}",
            "--batch-size", str(args.batch_size),
            "--lr", str(args.lr),
            "--seed", str(seed),
            "--mix", str(args.mix),
            "--ema", str(args.ema),
            "--photo-aug", str(args.photo_aug),
            "--threads", "4",
            "--save-every", "25",
            "--fresh",
            "--data", str(args.data),
            "--val", str(args.val),
            "--out-dir", str(out_dir),
            *extra,
        ] + (["--no-bf16"] if args.no_bf16 else [])  # fmt: skip

    teacher_dirs: list[Path] = list(args.teacher_dir)
    if args.teachers > 0:
        teacher_dirs += run_teachers(args, train_cmd, epoch_s, deadline, numbers)
    # The student (or the one run): N teachers' forward passes cost about a third of a step each.
    slowdown = 1 + 0.35 * len(teacher_dirs)
    left = deadline - args.export_reserve_s - time.perf_counter() - args.startup_s
    epochs = max(1, min(args.max_epochs, int(args.fit * left / (epoch_s * slowdown))))
    numbers["epochs"] = epochs
    extra = [a for d in teacher_dirs for a in ("--teacher", str(d))]
    if teacher_dirs:
        extra += ["--distill", str(args.distill), "--teacher-view", args.teacher_view]
    cmd = train_cmd(epochs, args.seed, args.run_dir, extra)
    print("run " + " ".join(cmd), flush=True)
    log_path = args.out / "train.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=max(1.0, deadline - args.export_reserve_s - time.perf_counter()))
            numbers["finished"] = proc.returncode == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            numbers["finished"] = False
            print("deadline reached: run stopped, exporting its best epoch so far", flush=True)
    numbers["train_wall_s"] = round(time.perf_counter() - start, 1)
    lines = log_path.read_text().splitlines()
    print("\n".join(line for line in lines if " epoch " in line or "Error" in line or "exported" in line))

    weights = args.run_dir / "model.safetensors"
    if not (args.run_dir / "best.pt").exists():
        sys.exit("no epoch finished before the deadline: nothing to export")
    mean, std = norm_stats(train_set)
    model = build_resnet50(len(FER2013_CLASSES))
    model.load_state_dict(torch.load(args.run_dir / "best.pt", map_location="cpu", weights_only=True))
    model = model.to(dev).to(memory_format=torch.channels_last)

    def accuracy(tta: Tta) -> float:
        probs = predict_probs(
            model, val_set.images, size=48, mean=mean, std=std, tta=tta, bf16=not args.no_bf16
        )
        return float((probs.argmax(1) == val_set.labels.numpy()).mean())

    acc = accuracy("none")
    if not numbers["finished"] or not weights.exists():
        cfg = replace(
            run_cfg,
            schedule=((48, epochs),),
            command="moodring train " + " ".join(cmd[3:]) + "  # stopped at the deadline",
        )
        export_model(model, args.run_dir, cfg, mean, std, acc)
    tta = accuracy("ten")
    numbers.update(val_accuracy=round(acc, 4), val_accuracy_tta=round(tta, 4))
    if teacher_dirs:
        numbers["ensemble_val_accuracy_tta"] = round(
            ensemble_accuracy(teacher_dirs, val_set, dev, not args.no_bf16), 4
        )
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    manifest["val_accuracy_tta"] = round(tta, 4)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    parts = split(weights, args.out)
    (args.out / "probe.json").write_text(json.dumps(numbers, indent=2) + "\n")
    precision = "fp32" if args.no_bf16 else "bf16"
    print(f"val {acc:.4f} single view, {tta:.4f} 10-view TTA ({precision}, {name})")
    print("parts " + " ".join(p.name for p in parts))
    print("summary " + json.dumps(numbers))


if __name__ == "__main__":
    main()
