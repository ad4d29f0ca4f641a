"""Dependency direction: the bot and the job contract never pull in torch or grad-cam."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = [
    "bot",
    "bot.app",
    "bot.settings",
    "bot.__main__",
    "bot.cogs.meta",
    "inference",
    "inference.errors",
    "inference.emotions",
    "inference.config",
    "inference.cli",
    "inference.manifest",
    "inference.contract",
    "inference.jobs",
    "bot.store",
    "recommender.service",
    "recommender.cli",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_does_not_import_torch(module: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "bad = [m for m in ('torch', 'pytorch_grad_cam', 'torchvision', 'cv2') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{module} imported {proc.stdout.strip()} {proc.stderr[-500:]}"
