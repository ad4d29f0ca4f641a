"""``moodring quantize``: the int8 trunk for CPU serving, calibrated, exported and checked.

One command, reproducible (the same faces in the same order give the same file): calibrate the
activation ranges of the stem and layer1–layer3 on FER2013 training faces, write the int8 file
beside the weights, then measure the accuracy rule against fp32 on this machine and record it in
the manifest. ``auto`` precision serves int8 only where the rule held:

* FER2013 PublicTest accuracy (one view, as served) within 0.3 points of fp32;
* taiwanese_dev ``--detect`` accuracy (one view, as served) within 0.5 points of fp32;
* Grad-CAM maps agree: mean IoU of the top-20 % region against fp32 ≥ 0.85 on 200 PublicTest faces.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from inference.cli_options import FER_VAL, model_dir_option, train_option
from inference.training.quantize_check import every_kth, measure_rule, meets_rule

log = logging.getLogger(__name__)
AT = click.Path(file_okay=False, path_type=Path)  # read only by the check: looked for there


@click.command("quantize")
@model_dir_option
@train_option("FER2013 Training: the calibration faces (never the real-photo dev set).")
@click.option("--faces", "n_faces", type=click.IntRange(16, 28709), default=1024, show_default=True)
@click.option(
    "--val", type=AT, default=FER_VAL, show_default=True, help="FER2013 PublicTest (for the check)."
)
@click.option(
    "--photos",
    type=AT,
    default=Path("../shared/datasets/taiwanese_dev"),
    show_default=True,
    help="Real photos for the --detect check (measured only; nothing is fitted on them).",
)
@click.option("--skip-check", is_flag=True, help="Write the file only; auto precision then won't serve it.")
def quantize_command(
    model_dir: Path | None, data: Path, n_faces: int, val: Path, photos: Path, skip_check: bool
) -> None:
    """Calibrate and write the int8 trunk, then measure the accuracy rule into the manifest."""
    import torch

    from inference.api.manifest import MANIFEST_FILE, default_model_dir
    from inference.serve.checkpoint import load_model
    from inference.serve.model import fold_batchnorm
    from inference.serve.preprocess import faces_to_batch
    from inference.serve.quantize import INT8_FILE, int8_kernels, quantize_trunk, save_trunk
    from inference.serve.settings import engine_settings
    from inference.training.data import load_faces

    settings = engine_settings(model_dir)
    if not int8_kernels():
        raise click.ClickException("this PyTorch has no x86 int8 kernels for this CPU")
    folder = settings.model_dir or default_model_dir()
    model, manifest = load_model(folder)
    classes = tuple(str(c) for c in manifest.classes)
    train = load_faces(data, manifest.input_size, classes)
    picked = train.images[torch.from_numpy(every_kth(len(train.images), n_faces))]
    faces = faces_to_batch(picked, manifest.input_size, manifest.mean, manifest.std)
    started = time.perf_counter()
    trunk = quantize_trunk(fold_batchnorm(model.eval()), faces.contiguous())
    sha = save_trunk(trunk, folder / INT8_FILE)
    click.echo(f"calibrated on {len(picked)} faces of {data} in {time.perf_counter() - started:.0f} s")
    click.echo(f"wrote {folder / INT8_FILE} (sha256 {sha[:12]})")
    updated = manifest.model_copy(
        update={"int8_file": INT8_FILE, "int8_sha256": sha, "int8_checks": {}, "int8_meets_rule": False}
    )
    updated.dump(folder / MANIFEST_FILE)
    if skip_check:
        return
    missing = [str(d) for d in (val, photos) if not d.is_dir()]
    if missing:
        raise click.ClickException(
            f"the check needs {', '.join(missing)} (or --skip-check: then auto won't serve it)"
        )
    torch.manual_seed(0)
    checks = measure_rule(folder, updated, val, photos, settings.face_detector)
    meets = meets_rule(checks)
    updated = updated.model_copy(update={"int8_checks": checks, "int8_meets_rule": meets})
    updated.dump(folder / MANIFEST_FILE)
    for name, value in checks.items():
        click.echo(f"  {name}: {value:g}")
    click.echo(
        f"accuracy rule {'met' if meets else 'NOT met'}: auto precision {'serves' if meets else 'skips'} int8"
    )
