"""`moodring adapt`: show and roll back against a real Redis, and a fit from a folder used by
`moodring evaluate --adapter` and `moodring analyze --adapter`, as an operator types them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import redis

from inference.api.community import ACTIVE, LOG, VERSIONS
from inference.serve.adapter import Adapter
from tests.conftest import face_photo
from tests.inference.test_cli import _moodring

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _record(version: str, activated: bool) -> str:
    return Adapter.identity(CLASSES, version).to_json(
        fitted_at=time.time(),
        readings=480,
        people=24,
        source="redis",
        activated=activated,
        reason="validated gain +3.1 points (margin 1)" if activated else "below the margin",
        validation={
            "method": "leave people out",
            "scored": 480,
            "accuracy_without": 0.5,
            "accuracy_with": 0.531,
        },
    )


def test_show_and_rollback(redis_server: str, tmp_path: Path) -> None:
    env = {"MOODRING_REDIS_URL": redis_server}
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    try:
        assert "active: none" in _moodring("adapt", "show", cwd=tmp_path, env=env).stdout
        client.hset(VERSIONS, mapping={"v1": _record("v1", True), "v2": _record("v2", True)})
        client.set(ACTIVE, "v2")
        client.rpush(LOG, "v2", "v1")
        shown = _moodring("adapt", "show", cwd=tmp_path, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "active: v2" in shown.stdout and "480 readings of 24 people" in shown.stdout
        assert "50.0 % without → 53.1 % with" in shown.stdout
        rolled = _moodring("adapt", "rollback", cwd=tmp_path, env=env)
        assert rolled.stdout.strip() == "active: v1" and client.get(ACTIVE) == b"v1"
        assert "active: none" in _moodring("adapt", "rollback", cwd=tmp_path, env=env).stdout
    finally:
        client.flushdb()
        client.close()


def test_fit_from_a_folder_then_evaluate_and_analyze_with_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        (photos / label).mkdir(parents=True)
        for i in range(4):
            size = (int(rng.integers(80, 160)), int(rng.integers(80, 160)))
            (photos / label / f"{i}.jpg").write_bytes(face_photo(size=size))
    env = {"MOODRING_MODEL_DIR": str(tiny_model_dir), "MOODRING_FACE_DETECTOR": "full", "MOODRING_BF16": "0"}
    out = tmp_path / "A.json"
    fit = _moodring(
        "adapt", "fit", "--from", str(photos), "--detect", "--out", str(out), cwd=tmp_path, env=env
    )
    assert fit.returncode == 0, fit.stderr
    assert "from 8 readings of 8 people" in fit.stdout and "the guard would refuse it" in fit.stdout  # 8 < 20
    assert "leaves photos (not people) out" in fit.stdout
    record = json.loads(out.read_text())
    assert record["classes"] == list(CLASSES) and record["source"] == str(photos)
    scored = _moodring(
        "evaluate", str(photos), "--detect", "--tta", "none", "--adapter", str(out), cwd=tmp_path, env=env
    )
    assert scored.returncode == 0, scored.stderr
    assert f"adapter {out}" in scored.stdout and "accuracy" in scored.stdout
    read = _moodring(
        "analyze",
        str(photos / "happy" / "0.jpg"),
        "--json",
        "--no-music",
        "--adapter",
        str(out),
        cwd=tmp_path,
        env=env,
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["faces"][0]["adapter"] == record["version"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(Adapter.identity(CLASSES[:6], "x").to_json())
    refused = _moodring(
        "analyze", str(photos / "happy" / "0.jpg"), "--adapter", str(wrong), cwd=tmp_path, env=env
    )
    assert refused.returncode == 2 and "adapter" in refused.stderr and "Traceback" not in refused.stderr
