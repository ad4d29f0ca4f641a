"""Dependency direction: the bot and the job contract never pull in torch or grad-cam."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import bot

BOT_MODULES = ["bot", *(m.name for m in pkgutil.walk_packages(bot.__path__, "bot."))]

TORCH_FREE = [
    *BOT_MODULES,
    "inference",
    "inference.api.errors",
    "inference.api.emotions",
    "inference.api.settings",
    "inference.cli",
    "inference.api.manifest",
    "inference.api.contract",
    "inference.api.client",
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
