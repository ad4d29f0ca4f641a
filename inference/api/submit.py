"""``moodring submit PHOTO``: the operator's smoke test of a deployment.

Sends one photo through the queue exactly as the bot does (shrink, queue, wait) and prints
what the worker answered. Exit status as ``moodring analyze`` (0 faces, 3 no face, 4 bad or
too large image, 2 bad configuration), plus 5 when no worker answered in time and 6 when the
queue refused the job as busy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import uuid
from pathlib import Path

import click

from inference.api.client import JobClient
from inference.api.connect import connect
from inference.api.contract import JobResult
from inference.api.errors import MoodringError, exit_status, user_message
from inference.api.heatmap import write_heatmap
from inference.api.logsetup import configure_logging
from inference.api.settings import QueueSettings, load_settings
from inference.api.transport import connect_blobs
from inference.cli_options import EXISTING_FILE, OUT_FILE, json_flag


async def _submit(settings: QueueSettings, data: bytes, heatmap: bool, timeout_s: float | None) -> JobResult:
    redis = connect(settings.redis_url, settings.redis_cluster, socket_connect_timeout=3)
    blobs = connect_blobs(settings, socket_connect_timeout=3)
    try:
        # A user id of its own for every run: the smoke test never collides with a real user's job.
        return await JobClient(redis, settings, blobs=blobs).analyze(
            f"submit-{uuid.uuid4().hex}", data, want_heatmap=heatmap, timeout_s=timeout_s
        )
    finally:
        await redis.aclose()
        if blobs is not None:
            await blobs.aclose()


@click.command("submit")
@click.argument("photo", type=EXISTING_FILE)
@json_flag
@click.option(
    "--heatmap",
    type=OUT_FILE,
    default=None,
    help="Ask for the heatmap and write it here.",
)
@click.option("--timeout", "timeout_s", type=float, default=None, help="Seconds to wait for a worker.")
def submit_command(photo: Path, as_json: bool, heatmap: Path | None, timeout_s: float | None) -> None:
    """Send PHOTO through the queue to whichever worker takes it, and print the answer.

    Exit status: 0 face(s), 3 no face, 4 unreadable or too large image, 5 no worker answered,
    6 queue busy, 2 bad configuration.
    """
    settings = load_settings(QueueSettings)
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level, settings.log_json)
    try:
        result = asyncio.run(_submit(settings, photo.read_bytes(), heatmap is not None, timeout_s))
    except MoodringError as exc:
        status = exit_status(exc.code)
        hint = (
            " (no worker answered: is `moodring worker` running on this Redis?)"
            if exc.code in ("timeout", "unavailable")
            else ""
        )
        click.echo(f"{photo}: {exc.code}: {user_message(exc.code)}{hint}", err=True)
        sys.exit(status)
    if heatmap is not None and result.heatmap_jpeg_b64:
        write_heatmap(heatmap, base64.b64decode(result.heatmap_jpeg_b64))
    if as_json:
        payload = result.model_dump(mode="json", exclude={"heatmap_jpeg_b64"})
        payload["heatmap"] = str(heatmap) if heatmap else None
        click.echo(json.dumps(payload, indent=2))
        return
    for i, f in enumerate(result.faces, 1):
        top = "  ".join(f"{k} {v:.0%}" for k, v in f.top(3))
        click.echo(f"face {i}: {f.emotion} ({f.confidence:.0%})  {top}")
        click.echo(f"  why: {f.reason}")
    click.echo(f"answered by worker {result.worker} (batch of {result.batch_size})")
