"""Photos sent through the queue never reach a file Redis writes, with compose's persistence settings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis

from inference.api.settings import QueueSettings
from tests.conftest import face_photo, spawn_redis
from tests.inference.worker.test_service import ROOT, _env, _spawn_worker, _wait_for_workers

pytestmark = pytest.mark.timeout(300)

MARKERS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"iVBORw0KGgo", b"/9j/")  # JPEG, PNG, and in base64


def _compose_args(service: str) -> list[str]:
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]["command"]
    assert command[0] == "redis-server"
    return [str(a) for a in command[1:]]


def _start(args: list[str], workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    return spawn_redis(*args, workdir=workdir)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=20)


def _submit(env: dict[str, str], photo: Path, heatmap: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "inference.cli", "submit", str(photo), "--heatmap", str(heatmap)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert heatmap.read_bytes().startswith(b"\xff\xd8\xff")


def _leaks(directory: Path) -> list[str]:
    found = []
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {m!r}" for m in MARKERS if m in data]
    return found


async def _run(
    tmp_path: Path, tiny_model_dir: Path, procs: list[subprocess.Popen[bytes]], separate_blobs: bool
) -> tuple[Path, Path]:
    durable_dir, blob_dir = tmp_path / "durable", tmp_path / "blobs"
    durable_dir.mkdir()
    blob_dir.mkdir()
    durable, durable_url = _start(_compose_args("redis"), durable_dir)
    procs.append(durable)
    extra: dict[str, str] = {}
    if separate_blobs:
        blobs, blob_url = _start(_compose_args("redis-blobs"), blob_dir)
        procs.append(blobs)
        extra["MOODRING_BLOB_REDIS_URL"] = blob_url
    env = _env(durable_url, tiny_model_dir, **extra)
    procs.append(_spawn_worker(env))
    redis = Redis.from_url(durable_url)
    try:
        await _wait_for_workers(redis, 1, QueueSettings(redis_url=durable_url))
    finally:
        await redis.aclose()
    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(face_photo(size=(200, 160)))
    submit_env = {k: v for k, v in env.items() if not k.startswith("MOODRING_FACE")}
    for i in range(2):
        await asyncio.to_thread(
            _submit, submit_env | {"MOODRING_JOB_TIMEOUT_S": "60"}, photo, tmp_path / f"h{i}.jpg"
        )
    await asyncio.sleep(1.5)  # appendfsync everysec
    return durable_dir, blob_dir


async def test_no_photo_or_heatmap_bytes_in_any_file_redis_writes(
    tmp_path: Path, tiny_model_dir: Path, stack: list[subprocess.Popen[bytes]]
) -> None:
    durable_dir, blob_dir = await _run(tmp_path, tiny_model_dir, stack, separate_blobs=True)
    assert any(durable_dir.rglob("*.aof")), "the durable Redis keeps an AOF, as in compose"
    assert _leaks(durable_dir) == [] and _leaks(blob_dir) == []
    assert not any(p.is_file() for p in blob_dir.rglob("*"))  # the blob store writes nothing at all


async def test_the_check_can_fail_one_redis_with_aof_would_keep_the_photos(
    tmp_path: Path, tiny_model_dir: Path, stack: list[subprocess.Popen[bytes]]
) -> None:
    durable_dir, _ = await _run(tmp_path, tiny_model_dir, stack, separate_blobs=False)
    assert _leaks(durable_dir), "without the blob store the AOF holds the photos (the old deployment)"
