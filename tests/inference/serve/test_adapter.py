"""The community adapter as served: its file, and the predictor applying it before the user's weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.api.community import decode_features
from inference.api.manifest import MANIFEST_FILE, ModelManifest
from inference.serve.adapter import Adapter, AdapterError
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.personal import Personal
from inference.serve.predictor import Predictor
from inference.serve.projection import fit_projection, load_projection
from tests.conftest import face_photo, make_tiny_model

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
SAD = CLASSES.index("sad")
DIMS = 8


@pytest.fixture(scope="module")
def projected_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a feature projection beside it (fitted on random features)."""
    out = make_tiny_model(tmp_path_factory.mktemp("projected"), CLASSES)
    projection = fit_projection(np.random.default_rng(0).normal(size=(64, 2048)), DIMS)
    digest = projection.save(out / "projection.safetensors")
    manifest = ModelManifest.load(out / MANIFEST_FILE)
    manifest.model_copy(
        update={"projection_file": "projection.safetensors", "projection_sha256": digest}
    ).dump(out / MANIFEST_FILE)
    return out


def leaning(to: int, sha: str = "", head: bool = False, version: str = "v1", push: float = 50.0) -> Adapter:
    """An adapter that pushes every face towards class ``to``."""
    bias = np.zeros(len(CLASSES))
    bias[to] = push
    weights = np.zeros((len(CLASSES), DIMS)) if head else None
    return Adapter(version, CLASSES, np.eye(len(CLASSES)), bias, weights, sha if head else "")


def test_an_adapter_file_round_trips_and_refuses_what_does_not_fit() -> None:
    adapter = leaning(SAD, sha="abc", head=True)
    back = Adapter.from_json(adapter.to_json(readings=12, people=3), CLASSES)
    assert back.version == "v1" and back.dims == DIMS and back.info is not None and back.info.people == 3
    probs = np.full((2, len(CLASSES)), 1 / len(CLASSES))
    assert np.allclose(back.apply(probs), adapter.apply(probs))
    assert np.allclose(Adapter.identity(CLASSES).apply(probs), probs)
    with pytest.raises(AdapterError, match="classes"):
        Adapter.from_json(adapter.to_json(), CLASSES[:6])
    with pytest.raises(AdapterError, match="projection"):
        back.check_projection("another")
    broken = json.loads(adapter.to_json())
    broken["bias"][0] = float("inf")
    with pytest.raises(AdapterError):
        Adapter.from_json(json.dumps(broken).replace("Infinity", "1e999"), CLASSES)
    with pytest.raises(AdapterError, match="not a moodring adapter"):
        Adapter.from_json(b"{}", CLASSES)


def test_the_adapter_moves_label_heatmap_and_reason_together(projected_model: Path) -> None:
    predictor = Predictor.load(projected_model, detector="full", bf16=False)
    assert predictor.projection is not None and predictor.projection.dims == DIMS
    photo = face_photo(size=(96, 96))
    adapter = leaning(SAD, predictor.projection_sha256, head=True)
    try:
        predictor.check_adapter(adapter)
        with pytest.raises(AdapterError):
            predictor.check_adapter(leaning(SAD, "another", head=True))
        plain = predictor.analyze(photo)
        adapted = predictor.analyze(photo, adapter=adapter)
        crop = [_crop(predictor, photo)]
        _, maps_adapted, _, raw, feats = predictor.classify_crops(crop, adapter=adapter)
        # the same class asked for another way (a prior that only "sad" survives)
        forced = Personal(prior={c: (1e6 if c == "sad" else 1e-6) for c in CLASSES})
        probs_forced, maps_forced, _, _, _ = predictor.classify_crops(crop, [forced])
        _, maps_plain, _, _, _ = predictor.classify_crops(crop)
    finally:
        predictor.close()
    before, after = plain.faces[0], adapted.faces[0]
    assert before.adapter == "" and before.raw_probs == {}
    assert after.emotion == "sad" and after.reason.startswith("sad") and after.adapter == "v1"
    assert after.raw_probs == pytest.approx(before.probs, abs=1e-5)  # the network's own, kept
    assert decode_features(after.features, DIMS) is not None  # the sender's face: its projection
    assert feats is not None and feats.shape == (1, DIMS)
    assert probs_forced[0].argmax() == SAD and before.emotion != "sad"
    assert np.allclose(maps_adapted, maps_forced, atol=1e-5)  # Grad-CAM explained "sad"
    assert not np.allclose(maps_adapted, maps_plain, atol=1e-3)  # not the unadapted label
    assert np.allclose(raw[0], [before.probs[c] for c in CLASSES], atol=1e-5)


def _crop(predictor: Predictor, photo: bytes) -> np.ndarray:
    """The crop the predictor reads from ``photo`` (the full frame)."""
    from inference.api.intake import decode_image
    from inference.serve.faces import crop_face

    image = decode_image(photo).image
    face = FullFrameDetector().detect(image)[0]
    return crop_face(image, face, predictor.manifest.input_size).pixels


def test_the_calm_face_is_read_through_the_adapter_too(projected_model: Path) -> None:
    predictor = Predictor.load(projected_model, detector="full", bf16=False)
    photo = face_photo(size=(96, 96))
    try:
        adapter = leaning(SAD, predictor.projection_sha256, head=False, push=12.0)
        # a calm face that itself reads "sad" after the adapter divides "sad" back out
        calm = dict.fromkeys(CLASSES, 1 / len(CLASSES))
        with_calm = predictor.analyze(photo, personal=Personal(baseline=calm), adapter=adapter).faces[0]
        without = predictor.analyze(photo, adapter=adapter).faces[0]
    finally:
        predictor.close()
    assert without.emotion == "sad"
    assert with_calm.baseline_applied and with_calm.probs["sad"] < without.probs["sad"]


def test_the_projection_is_checked_against_the_manifest(projected_model: Path, tmp_path: Path) -> None:
    manifest = ModelManifest.load(projected_model / MANIFEST_FILE)
    assert load_projection(projected_model, manifest) is not None
    bad = manifest.model_copy(update={"projection_sha256": "0" * 64})
    from inference.api.errors import ModelError

    with pytest.raises(ModelError, match="sha256"):
        load_projection(projected_model, bad)
    assert torch.is_grad_enabled()
