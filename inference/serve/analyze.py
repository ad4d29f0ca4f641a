"""``moodring analyze``: the whole serving path on one photo, offline (no Redis, no Discord)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from inference.api.errors import ImageError, ModelError, NoFaceFound, exit_status, user_message
from inference.api.heatmap import write_heatmap
from inference.cli_options import EXISTING_FILE, OUT_FILE, adapter_option, json_flag, model_dir_option
from inference.serve.faces import detector_names
from inference.serve.settings import engine_settings
from recommender.platforms import CHOICES


def sample_photo() -> Path:
    """A real face photo that ships inside an installed package (matplotlib's Grace Hopper)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@click.command("analyze")
@click.argument("photo", type=EXISTING_FILE, required=False)
@json_flag
@click.option(
    "--heatmap",
    type=OUT_FILE,
    default=None,
    help="Write the Grad-CAM explanation here (JPEG; a .png or .webp name converts).",
)
@model_dir_option
@click.option("--detector", type=click.Choice(detector_names()), default=None)
@click.option(
    "--strategy",
    type=click.Choice(["match", "lift", "calm"]),
    default=None,
    help="music strategy for the detected mood (default depends on the emotion)",
)
@click.option("--no-music", is_flag=True, help="Skip the music recommendations.")
@click.option(
    "--platform",
    type=click.Choice(list(CHOICES)),
    default=None,
    help="links on this platform (the exact track where Deezer/iTunes/Odesli answer, else a search); "
    "default: the catalog's own (Spotify)",
)
@click.option(
    "--baseline",
    "calm",
    type=EXISTING_FILE,
    default=None,
    help="A calm photo of the same person: PHOTO's largest face is read relative to it.",
)
@adapter_option
def analyze_command(
    photo: Path | None,
    as_json: bool,
    heatmap: Path | None,
    model_dir: Path | None,
    detector: str | None,
    strategy: str | None,
    no_music: bool,
    platform: str | None,
    calm: Path | None,
    adapter_file: Path | None,
) -> None:
    """Read the emotion of every face in PHOTO (default: a sample portrait shipped with matplotlib).

    Exit status: 0 face(s) found, 3 no face, 4 unreadable or too large image, 2 bad configuration.
    """
    from inference.api.intake import IntakeLimits, decode_image
    from inference.serve.personal import Personal

    settings = engine_settings(model_dir, detector)
    if photo is None:
        photo = sample_photo()
        if not as_json:
            click.echo(f"(no photo given: using the sample portrait {photo})")
    limits = IntakeLimits(max_bytes=settings.max_upload_bytes, max_side=settings.max_side)
    for path in (calm, photo):  # an unusable file is said at once, before the model loads
        if path is None:
            continue
        try:
            decode_image(path.read_bytes(), limits)
        except ImageError as exc:
            click.echo(f"{path}: {user_message(exc.code)} ({exc})", err=True)
            sys.exit(exit_status(exc.code))
    from inference.serve.device import DeviceUnavailable
    from inference.serve.predictor import Predictor  # seconds of imports: only for a usable photo

    try:
        predictor = Predictor.load(limits=limits, **settings.predictor_options())
    except DeviceUnavailable as exc:
        click.echo(f"moodring: configuration error: {exc}", err=True)
        sys.exit(2)
    except ModelError as exc:
        click.echo(f"moodring: model error: {exc}", err=True)
        sys.exit(1)
    adapter = None
    if adapter_file is not None:
        from inference.serve.adapter import Adapter

        try:
            adapter = Adapter.from_json(adapter_file.read_bytes())
            predictor.check_adapter(adapter)
        except ModelError as exc:
            click.echo(f"moodring: adapter error: {exc}", err=True)
            sys.exit(2)
    baseline: dict[str, float] = {}
    current = photo
    try:
        if calm is not None:
            current = calm  # the calm face is read as the model sees it, then divides out its lean
            calm_face = predictor.analyze(calm.read_bytes(), want_heatmap=False).faces[0]
            baseline = calm_face.raw_probs or calm_face.probs  # the network's own, as the bot keeps it
            current = photo
        personal = Personal(baseline=baseline) if baseline else None
        result = predictor.analyze(
            photo.read_bytes(), want_heatmap=heatmap is not None, personal=personal, adapter=adapter
        )
    except NoFaceFound:
        click.echo(f"no face found in {current}: {user_message('no_face')}", err=True)
        sys.exit(exit_status("no_face"))
    except ImageError as exc:
        click.echo(f"{current}: {user_message(exc.code)} ({exc})", err=True)
        sys.exit(exit_status(exc.code))
    finally:
        predictor.close()
    if heatmap is not None and result.heatmap_jpeg is not None:
        write_heatmap(heatmap, result.heatmap_jpeg)
    music: list = []  # type: ignore[type-arg]
    if not no_music:
        import asyncio

        from recommender.cli import build_recommender

        largest = result.faces[0]
        rec = build_recommender()
        if platform is not None:
            from recommender.sources import one_off_link_resolver

            rec.links = one_off_link_resolver()
        strategy = strategy or rec.mood_map.default_strategy(largest.emotion)
        music = asyncio.run(
            rec.recommend(largest.emotion, probs=largest.probs, strategy=strategy, platform=platform)
        )
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
                    "baseline_applied": f.baseline_applied,
                    "adapter": f.adapter or None,
                }
                for f in result.faces
            ],
            "heatmap": str(heatmap) if heatmap else None,
            "baseline": (
                {"photo": str(calm), "probs": {k: round(v, 4) for k, v in baseline.items()}}
                if baseline
                else None
            ),
            "music": [
                {
                    "title": r.track.title,
                    "artists": list(r.track.artists),
                    "url": r.track.url,
                    "preview_url": r.track.preview_url,
                    "every_platform": dict(r.track.choices) or None,
                    "reason": r.reason,
                }
                for r in music
            ],
            "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
        }
        click.echo(json.dumps(payload, indent=2))
        return
    if baseline:
        lean = max(baseline, key=baseline.__getitem__)
        click.echo(f"calm face ({calm}) reads as {lean}; face 1 is read relative to it")
    for i, f in enumerate(result.faces, 1):
        top = "  ".join(f"{k} {v:.0%}" for k, v in f.top(3))
        click.echo(f"face {i}: {f.emotion} ({f.confidence:.0%})  {top}")
        click.echo(f"  why: {f.reason}")
    if heatmap is not None:
        click.echo(f"heatmap written to {heatmap}")
    if music:
        from recommender.cli import format_recommendations

        for line in format_recommendations(music, strategy or ""):
            click.echo(line)
