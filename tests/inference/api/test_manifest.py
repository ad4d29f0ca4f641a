from __future__ import annotations

from pathlib import Path

import pytest

from inference.api.errors import ModelError
from inference.api.manifest import ModelManifest
from inference.serve.checkpoint import load_model
from inference.training.data import FER2013_CLASSES as EMOTIONS


def test_manifest_round_trip(tmp_path: Path, tiny_model_dir: Path) -> None:
    manifest = ModelManifest.load(tiny_model_dir / "manifest.json")
    manifest.dump(tmp_path / "m.json")
    again = ModelManifest.load(tmp_path / "m.json")
    assert again == manifest
    assert again.classes == EMOTIONS
    assert again.input_size == 32


def test_manifest_rejects_unknown_fields(tmp_path: Path, tiny_model_dir: Path) -> None:
    text = (tiny_model_dir / "manifest.json").read_text().replace('"stem"', '"unexpected": 1, "stem"')
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ValueError):
        ModelManifest.load(tmp_path / "manifest.json")


def test_load_model_checks_sha256(tmp_path: Path, tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    assert not model.training
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((tiny_model_dir / "manifest.json").read_text())
    data = bytearray((tiny_model_dir / manifest.weights_file).read_bytes())
    data[-1] ^= 0xFF
    (broken / manifest.weights_file).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(broken)


def test_load_model_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="manifest"):
        load_model(tmp_path)
