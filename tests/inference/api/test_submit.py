"""`moodring submit` against a real redis-server and a real worker process (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from inference.api.settings import QueueSettings
from tests.conftest import face_photo
from tests.inference.worker.test_service import ROOT, _env, _spawn_worker, _wait_for_workers

pytestmark = pytest.mark.timeout(300)


def _submit(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env.update(PYTHONPATH=str(ROOT), MOODRING_REDIS_URL=redis_url, MOODRING_JOB_TIMEOUT_S="60")
    return subprocess.run(
        [sys.executable, "-m", "inference.cli", "submit", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_submit_goes_through_the_queue_to_a_worker(
    redis: Redis,
    redis_server: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    photo = tmp_path / "selfie.jpg"
    photo.write_bytes(face_photo(size=(200, 160)))
    junk = tmp_path / "notes.jpg"
    junk.write_bytes(b"not an image at all")

    # nobody consumes the queue yet: a distinct exit status, quickly
    lonely = _submit(redis_server, str(photo), "--timeout", "30")  # answered at once all the same
    assert lonely.returncode == 5, lonely.stderr
    assert "no worker answered" in lonely.stderr and "Traceback" not in lonely.stderr

    workers.append(_spawn_worker(_env(redis_server, tiny_model_dir)))
    await _wait_for_workers(redis, 1, QueueSettings(redis_url=redis_server))
    heatmap = tmp_path / "heat.png"
    ok = _submit(redis_server, str(photo), "--json", "--heatmap", str(heatmap))
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert len(result["faces"]) == 1 and result["error"] is None and result["worker"]
    assert result["faces"][0]["emotion"] in result["faces"][0]["probs"]
    assert heatmap.read_bytes().startswith(b"\x89PNG")  # the JPEG, converted for a .png name

    bad = _submit(redis_server, str(junk))
    assert bad.returncode == 4 and "Traceback" not in bad.stderr
    # the queue is left clean: no photo, no result, no stream entry
    assert [k async for k in redis.scan_iter(match="moodring:job:*:img")] == []
    assert [k async for k in redis.scan_iter(match="moodring:job:*:res")] == []
