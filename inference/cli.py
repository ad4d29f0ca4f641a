"""The ``moodring`` command line. Sub-commands import their heavy modules only when run."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Literal

import click

EXIT_NO_FACE = 3
EXIT_BAD_IMAGE = 4

# name -> (module:attribute, one-line help shown by `moodring --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("inference.cli:analyze_command", "Read the emotion of every face in a photo (offline)."),
    "evaluate": (
        "inference.cli:evaluate_command",
        "Score the model on an ImageFolder tree of labelled faces.",
    ),
    "train": ("inference.train:train_command", "Train the FER2013 ResNet50 (resumable, CPU-friendly)."),
    "average": ("inference.average:average_command", "Average a run's last epochs' weights (SWA-style)."),
    "calibrate": ("inference.calibrate:calibrate_command", "Fit the softmax temperature on labelled faces."),
    "recommend": ("recommender.cli:recommend_command", "Recommend music for an emotion (offline catalog)."),
    "catalog": ("recommender.cli:catalog_group", "Import a CSV track table (Spotify URIs + audio features)."),
    "worker": ("inference.worker:worker_command", "Consume analysis jobs from Redis Streams (scales out)."),
    "bot": ("bot.__main__:bot_command", "Run the Discord bot (needs MOODRING_DISCORD_TOKEN)."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (no torch for `--help`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name][0].split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="moodring")
def cli() -> None:
    """moodring: selfie → emotion (ResNet50, FER2013) → Grad-CAM → music for the mood."""


def _engine(model_dir: Path | None, detector: str | None) -> Any:
    """Load engine settings (exit 2 on bad config), configure logging and torch threads."""
    from inference.config import EngineSettings, load_settings
    from inference.logsetup import configure_logging

    overrides: dict[str, object] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir
    if detector is not None:
        overrides["face_detector"] = detector
    settings = load_settings(EngineSettings, **overrides)
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level, settings.log_json)
    import torch

    torch.set_num_threads(settings.torch_threads)
    return settings


def sample_photo() -> Path:
    """A real face photo that ships inside an installed package (matplotlib's Grace Hopper)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@click.command("analyze")
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--heatmap",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the Grad-CAM explanation PNG here.",
)
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--detector", type=click.Choice(["mtcnn", "haar", "full"]), default=None)
@click.option(
    "--strategy",
    type=click.Choice(["match", "lift", "calm"]),
    default=None,
    help="music strategy for the detected mood (default depends on the emotion)",
)
@click.option("--no-music", is_flag=True, help="Skip the music recommendations.")
def analyze_command(
    photo: Path | None,
    as_json: bool,
    heatmap: Path | None,
    model_dir: Path | None,
    detector: str | None,
    strategy: str | None,
    no_music: bool,
) -> None:
    """Read the emotion of every face in PHOTO (default: a sample portrait shipped with matplotlib).

    Exit status: 0 face(s) found, 3 no face, 4 unreadable or too large image, 2 bad configuration.
    """
    from inference.errors import ImageError, ModelError, NoFaceFound, user_message
    from inference.intake import IntakeLimits
    from inference.predictor import Predictor

    settings = _engine(model_dir, detector)
    if photo is None:
        photo = sample_photo()
        if not as_json:
            click.echo(f"(no photo given: using the sample portrait {photo})")
    limits = IntakeLimits(max_bytes=settings.max_upload_bytes, max_side=settings.max_side)
    try:
        predictor = Predictor.load(settings.model_dir, settings.face_detector, limits, bf16=settings.bf16)
    except ModelError as exc:
        click.echo(f"moodring: model error: {exc}", err=True)
        sys.exit(1)
    try:
        result = predictor.analyze(photo.read_bytes(), want_heatmap=heatmap is not None)
    except NoFaceFound:
        click.echo(f"no face found in {photo}: {user_message('no_face')}", err=True)
        sys.exit(EXIT_NO_FACE)
    except ImageError as exc:
        click.echo(f"{photo}: {user_message(exc.code)} ({exc})", err=True)
        sys.exit(EXIT_BAD_IMAGE)
    finally:
        predictor.close()
    if heatmap is not None and result.heatmap_png is not None:
        heatmap.write_bytes(result.heatmap_png)
    music: list = []  # type: ignore[type-arg]
    if not no_music:
        import asyncio

        from recommender.cli import build_recommender

        largest = result.faces[0]
        rec = build_recommender()
        strategy = strategy or rec.mood_map.default_strategy(largest.emotion)
        music = asyncio.run(rec.recommend(largest.emotion, probs=largest.probs, strategy=strategy))
    if as_json:
        payload = {
            "photo": str(photo),
            "image_size": list(result.image_size),
            "cam_size": list(result.cam_size),
            "faces": [
                {
                    "box": [round(v, 1) for v in f.box],
                    "score": round(f.score, 4),
                    "emotion": f.emotion,
                    "confidence": round(f.confidence, 4),
                    "probs": {k: round(v, 4) for k, v in f.probs.items()},
                    "reason": f.reason,
                }
                for f in result.faces
            ],
            "heatmap": str(heatmap) if heatmap else None,
            "music": [
                {
                    "title": r.track.title,
                    "artists": list(r.track.artists),
                    "url": r.track.url,
                    "reason": r.reason,
                }
                for r in music
            ],
            "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
        }
        click.echo(json.dumps(payload, indent=2))
        return
    for i, f in enumerate(result.faces, 1):
        top = sorted(f.probs.items(), key=lambda kv: kv[1], reverse=True)[:3]
        click.echo(
            f"face {i}: {f.emotion} ({f.confidence:.0%})  " + "  ".join(f"{k} {v:.0%}" for k, v in top)
        )
        click.echo(f"  why: {f.reason}")
    if heatmap is not None:
        click.echo(f"heatmap written to {heatmap}")
    if music:
        from recommender.cli import format_recommendations

        for line in format_recommendations(music, strategy or ""):
            click.echo(line)


@click.command("evaluate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON (accuracy and macro_f1 at top level).",
)
@click.option(
    "--tta",
    type=click.Choice(["none", "flip", "ten"]),
    default="ten",
    show_default=True,
    help="Test-time augmentation: none, horizontal flip, or 5 shifted crops x flip.",
)
@click.option("--detect", is_flag=True, help="Run the photo pipeline (detector → crop → classify).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--detector", type=click.Choice(["mtcnn", "haar", "full"]), default=None)
def evaluate_command(
    directory: Path,
    json_out: Path | None,
    tta: Literal["none", "flip", "ten"],  # validated by click.Choice
    detect: bool,
    model_dir: Path | None,
    detector: str | None,
) -> None:
    """Evaluate on DIRECTORY: folders named after emotions (any subset of the 7)."""
    from inference.checkpoint import load_model
    from inference.data import DatasetError
    from inference.evaluate import evaluate_dir, write_json
    from inference.faces import build_detector
    from inference.metrics import format_report
    from inference.precision import resolve_bf16

    settings = _engine(model_dir, detector)
    model, manifest = load_model(settings.model_dir)
    det = build_detector(settings.face_detector) if detect else None
    try:
        report, stats = evaluate_dir(
            model,
            manifest,
            directory,
            tta=tta,
            detector=det,  # type: ignore[arg-type]
            bf16=resolve_bf16(settings.bf16),
        )
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(
        f"model: {manifest.architecture} ({manifest.weights_sha256[:12]}), tta={tta}, "
        f"temperature={manifest.temperature:g}"
    )
    if stats is not None:
        click.echo(f"faces found: {stats.with_face}/{stats.images} photos ({stats.unreadable} unreadable)")
    click.echo(format_report(report))
    if json_out is not None:
        write_json(
            json_out,
            report,
            stats,
            {
                "tta": tta,
                "temperature": manifest.temperature,
                "weights_sha256": manifest.weights_sha256,
                "data": str(directory),
            },
        )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
