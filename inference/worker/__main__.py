"""``python -m inference.worker`` and ``moodring worker``: the worker's composition root (settings,
Redis clients, the predictor, the worker loop until SIGTERM) and the container health check."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time

import click

from inference.api.connect import connect
from inference.api.settings import load_settings
from inference.api.transport import TRANSIENT, connect_blobs, open_transport
from inference.worker.adapting import AdapterFollower
from inference.worker.metrics import Metrics
from inference.worker.service import Worker
from inference.worker.settings import WorkerSettings

log = logging.getLogger("inference.worker")


async def check(settings: WorkerSettings) -> int:
    """Health check for containers: Redis answers and this host's worker beat recently."""
    redis = connect(settings.redis_url, settings.redis_cluster, socket_timeout=3)
    try:
        await redis.ping()
        beats = await open_transport(redis, settings).recent_heartbeats(socket.gethostname())
    except TRANSIENT as exc:
        click.echo(f"unhealthy: redis unreachable ({exc})", err=True)
        return 1
    finally:
        await redis.aclose()
    if not beats or time.time() - max(t for t, _, _ in beats) > settings.worker_alive_s:
        click.echo("unhealthy: no recent worker heartbeat", err=True)
        return 1
    serving = ", ".join(sorted({f"{model} in {precision}" for _, model, precision in beats if precision}))
    click.echo(f"healthy (serving {serving})" if serving else "healthy")
    return 0


async def serve(settings: WorkerSettings) -> None:
    """Build the predictor and Redis client, run one worker until SIGTERM."""
    from inference.api.intake import IntakeLimits
    from inference.api.settings import EXIT_CONFIG
    from inference.serve.device import DeviceUnavailable, use_threads
    from inference.serve.predictor import Predictor

    use_threads(settings.torch_threads)
    limits = IntakeLimits(max_bytes=settings.max_upload_bytes, max_side=settings.max_side)
    try:
        predictor = Predictor.load(limits=limits, **settings.predictor_options())
    except DeviceUnavailable as exc:
        log.error("%s", exc)
        raise SystemExit(EXIT_CONFIG) from None
    redis = connect(
        settings.redis_url,
        settings.redis_cluster,
        socket_timeout=max(5.0, settings.block_ms / 1000 + 2),
        socket_connect_timeout=3,
        health_check_interval=10,
    )
    blobs = connect_blobs(settings, socket_timeout=5, socket_connect_timeout=3, health_check_interval=10)
    name = f"{socket.gethostname()}-{os.getpid()}"
    adapters = AdapterFollower(
        redis,
        settings,
        predictor.manifest.classes,
        predictor.projection_sha256,
        predictor.projection.dims if predictor.projection is not None else 0,
        name,
    )
    worker = Worker(
        redis,
        predictor,
        settings,
        name=name,
        metrics=Metrics.start(settings.metrics_port),
        blobs=blobs,
        adapters=adapters,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        predictor.close()
        await redis.aclose()
        if blobs is not None:
            await blobs.aclose()


@click.command("worker")
@click.option("--check", "health", is_flag=True, help="Exit 0 if Redis and this host's worker are healthy.")
def worker_command(health: bool) -> None:
    """Consume analysis jobs from Redis Streams (scale out: run more of these anywhere)."""
    from inference.api.logsetup import configure_logging

    settings = load_settings(WorkerSettings)
    configure_logging(settings.log_level, settings.log_json)
    if health:
        sys.exit(asyncio.run(check(settings)))
    asyncio.run(serve(settings))


if __name__ == "__main__":
    worker_command(prog_name="python -m inference.worker")
