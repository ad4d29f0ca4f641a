from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inference.cli import COMMANDS
from inference.training.data import FER2013_CLASSES as EMOTIONS
from tests.fakemusic import Fakes


def _moodring(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "moodring"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "inference.cli"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    clean["MOODRING_TORCH_THREADS"] = "1"
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, cwd=cwd, env=clean | (env or {}), timeout=300
    )


def test_help_lists_every_subcommand_with_one_line(tmp_path: Path) -> None:
    proc = _moodring("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for name, (_, summary) in COMMANDS.items():
        assert any(
            line.split()[:1] == [name] and summary[:30] in line for line in proc.stdout.splitlines()
        ), name


@pytest.mark.parametrize("how", ["moodring", "python -m bot"])
def test_bot_without_token_fails_with_one_clear_line(tmp_path: Path, how: str) -> None:
    if how == "moodring":
        proc = _moodring("bot", cwd=tmp_path)
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        proc = subprocess.run(
            [sys.executable, "-m", "bot"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
        )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "MOODRING_DISCORD_TOKEN" in lines[0]
    assert "Traceback" not in proc.stderr


def test_bot_with_an_invalid_mood_map_fails_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "moods.json"
    bad.write_text('{"schema_version": 1, "emotions": {"happy": {"valence": 7}}}')
    env = {
        "MOODRING_DISCORD_TOKEN": "not-used",
        "MOODRING_USER_SALT": "a-test-deployment-secret",
        "MOODRING_MOOD_MAP": str(bad),
        "MOODRING_LOG_LEVEL": "WARNING",
    }
    proc = _moodring("bot", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid mood map" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_setting_fails_at_start_up(tmp_path: Path) -> None:
    proc = _moodring("analyze", cwd=tmp_path, env={"MOODRING_TORCH_THREADS": "zero"})
    assert proc.returncode == 2
    assert "MOODRING_TORCH_THREADS" in proc.stderr and "Traceback" not in proc.stderr


def test_analyze_shipped_model_on_sample_portrait(tmp_path: Path) -> None:
    """The README's first command: a real photo from an installed package, the committed model."""
    out = tmp_path / "heat.png"
    proc = _moodring("analyze", "--json", "--heatmap", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["faces"]) == 1
    assert result["faces"][0]["emotion"] in EMOTIONS
    assert min(result["cam_size"]) >= 6
    with Image.open(out) as im:
        assert im.format == "PNG"


def test_analyze_face_free_photo_exits_non_zero(tmp_path: Path) -> None:
    from matplotlib import cbook

    logo = Path(cbook.get_sample_data("logo2.png", asfileobj=False))
    proc = _moodring("analyze", str(logo), cwd=tmp_path)
    assert proc.returncode == 3
    assert "no face" in proc.stderr.lower()


def test_analyze_unreadable_file_exits_4(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg")
    proc = _moodring("analyze", str(junk), cwd=tmp_path)
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr


async def test_analyze_gives_links_on_the_chosen_platform(tmp_path: Path, fakes: Fakes) -> None:
    """`--platform`: the exact tracks through the link sources (faked here), or a search there."""
    env = {
        "MOODRING_DEEZER_API_BASE": fakes.url("deezer"),
        "MOODRING_ITUNES_API_BASE": fakes.url("itunes"),
        "MOODRING_ODESLI_API_BASE": fakes.url("odesli"),
    }
    proc = await asyncio.to_thread(
        _moodring, "analyze", "--json", "--platform", "tidal", cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    music = json.loads(proc.stdout)["music"]
    assert len(music) == 5 and all(m["url"].startswith("https://listen.tidal.com/track/") for m in music)
    assert all(m["preview_url"].startswith("https://") for m in music)
    fakes.mode = {"deezer": "500", "itunes": "500", "odesli": "500"}
    proc = await asyncio.to_thread(
        _moodring, "analyze", "--json", "--platform", "tidal", cwd=tmp_path, env=env
    )
    music = json.loads(proc.stdout)["music"]
    assert len(music) == 5 and all(m["url"].startswith("https://listen.tidal.com/search?") for m in music)
