"""The bot image's files, as the Dockerfile copies them, run the bot's entry point without torch."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pytorch_grad_cam", "cv2", "facenet_pytorch", "safetensors")


def _stage(name: str) -> list[str]:
    """The instructions of one stage, including the stages it builds FROM (in order)."""
    stages: dict[str, list[str]] = {}
    parents: dict[str, str] = {}
    current = ""
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            current = words[-1] if len(words) >= 4 and words[-2].upper() == "AS" else words[1]
            parents[current] = words[1]
            stages[current] = []
        elif words and not line.lstrip().startswith("#") and current:
            stages[current].append(line.strip())
    chain = []
    while name in stages:
        chain.insert(0, name)
        name = parents[name]
    return [instr for stage in chain for instr in stages[stage]]


def _replay_copies(instructions: list[str], dest: Path) -> list[str]:
    copied = []
    for instr in instructions:
        words = shlex.split(instr)
        if words[0] != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        *sources, target = args
        for src in sources:
            path = ROOT / src
            out = dest / (target if target not in ("./", ".") and len(sources) == 1 else src)
            if target.endswith("/") and len(sources) > 1:
                out = dest / target / Path(src).name
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, out, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, out)
            copied.append(src)
    return copied


# Run inside the replayed tree: no editable install of the checkout, and torch & co. unimportable.
PROBE = """
import importlib, importlib.abc, pkgutil, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
HEAVY = {heavy!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is not installed in the bot image")
sys.meta_path.insert(0, Block())
import bot
assert bot.__file__.startswith(sys.argv[1]), bot.__file__
for m in ["bot.__main__", *(i.name for i in pkgutil.walk_packages(bot.__path__, "bot."))]:
    importlib.import_module(m)
from inference.api.emotions import load_registry
assert len(load_registry().names) >= 2
from bot.__main__ import main
sys.argv = ["moodring-bot"]
main()
"""


def test_bot_stage_files_run_the_bot_without_torch(tmp_path: Path) -> None:
    instructions = _stage("bot")
    runs = [i.removeprefix("RUN") for i in instructions if i.startswith("RUN")]
    installs = [cmd for r in runs for cmd in r.split("&&") if "pip install" in cmd]
    assert not any("torch" in i for i in installs), "the bot stage installs torch"
    assert any("'.[bot]'" in i for i in instructions), "the bot stage installs the [bot] extra"
    copied = _replay_copies(instructions, tmp_path)
    assert {"bot", "inference", "recommender"} <= set(copied)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODRING_", "PYTHONPATH", "SPOTIPY_"))}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), str(tmp_path)],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The entry point gets as far as its settings: no token here, so one line and status 2.
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "MOODRING_DISCORD_TOKEN is required" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_stage_copies_the_same_package() -> None:
    bot = [i for i in _stage("bot") if i.startswith("COPY")]
    worker = [i for i in _stage("worker") if i.startswith("COPY")]
    assert bot == worker
