from __future__ import annotations

import gc
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inference.serve.predictor as predictor_module
from inference.api.errors import BadImage, NoFaceFound
from inference.serve.checkpoint import load_model
from inference.serve.explain import CamClassifier, map_is_empty, reason_text, region_shares
from inference.serve.faces import Face, Landmarks
from inference.serve.personal import Personal
from inference.serve.predictor import Predictor
from tests.conftest import face_photo


class FakeDetector:
    """Returns preset faces; lets predictor tests run without a face detector."""

    name = "fake"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, image: Image.Image) -> list[Face]:
        return list(self.faces)


def _face(x: float, y: float, side: float) -> Face:
    marks = Landmarks(
        (x + side * 0.3, y + side * 0.4),
        (x + side * 0.7, y + side * 0.4),
        (x + side * 0.5, y + side * 0.6),
        (x + side * 0.35, y + side * 0.8),
        (x + side * 0.65, y + side * 0.8),
    )
    return Face((x, y, x + side, y + side), 0.99, marks)


@pytest.fixture
def predictor(tiny_model_dir: Path) -> Predictor:
    model, manifest = load_model(tiny_model_dir)
    faces = [_face(10, 10, 60), _face(150, 40, 140), _face(300, 200, 90)]
    p = Predictor(model, manifest, FakeDetector(faces), bf16=False)
    yield p
    p.close()


def test_all_faces_returned_largest_first(predictor: Predictor) -> None:
    result = predictor.analyze(face_photo(size=(480, 360)))
    sides = [f.box[2] - f.box[0] for f in result.faces]
    assert sides == sorted(sides, reverse=True) == [140, 90, 60]
    for f in result.faces:
        assert set(f.probs) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
        assert sum(f.probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert f.emotion == max(f.probs, key=f.probs.__getitem__)
        assert f.reason.startswith(f.emotion)
    assert result.heatmap_jpeg is not None
    assert Image.open(io.BytesIO(result.heatmap_jpeg)).format == "JPEG"
    assert {"decode", "detect", "classify_cam", "render", "total"} <= set(result.timings_ms)


def test_no_face_is_typed(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    p = Predictor(model, manifest, FakeDetector([]), bf16=False)
    with pytest.raises(NoFaceFound):
        p.analyze(face_photo())
    p.close()


def test_batch_keeps_per_photo_errors_in_place(predictor: Predictor) -> None:
    results = predictor.analyze_many(
        [face_photo(size=(480, 360)), b"not an image", face_photo(size=(480, 360))], [False, False, True]
    )
    assert not isinstance(results[0], Exception) and results[0].heatmap_jpeg is None
    assert isinstance(results[1], BadImage)
    assert not isinstance(results[2], Exception) and results[2].heatmap_jpeg is not None


def test_gradcam_map_shape_and_range(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    with CamClassifier(model, manifest.target_layer, bf16=False) as cam:
        x = torch.randn(3, 1, 32, 32)
        out = cam(x)
    assert out.probs.shape == (3, 7)
    assert out.maps.shape == (3, 32, 32)
    assert out.native_size == (4, 4)  # layer3 of the FER stem at 32 px
    assert out.maps.min() >= 0.0 and out.maps.max() <= 1.0 + 1e-6
    # one forward pass: probabilities equal a plain forward
    with torch.no_grad():
        ref = torch.softmax(model(x), 1).numpy()
    assert np.allclose(out.probs, ref, atol=1e-4)


def test_gradcam_target_defaults_to_the_predicted_class_score(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with CamClassifier(model, manifest.target_layer, bf16=False) as cam:
        default = cam(x)
    with CamClassifier(model, manifest.target_layer, bf16=False, target=lambda z: z[z.argmax()]) as cam:
        same = cam(x)
    least = default.probs.argmin(1)
    with CamClassifier(model, manifest.target_layer, bf16=False, target=lambda z: z[z.argmin()]) as cam:
        other = cam(x)
    assert np.allclose(default.maps, same.maps, atol=1e-5)
    assert np.allclose(default.probs, other.probs, atol=1e-5)  # the target never changes the prediction
    assert (least != default.probs.argmax(1)).all()
    assert not np.allclose(default.maps, other.maps, atol=1e-3)


def test_gradcam_hooks_released_and_the_callers_model_untouched(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    cam = CamClassifier(model, manifest.target_layer, bf16=True)
    layer = cam.model.layer3
    assert len(layer._forward_hooks) > 0 and not model.layer3._forward_hooks
    cam.close()
    assert len(layer._forward_hooks) == 0
    # the serving copy folds norms and casts weights; the caller's network keeps its own
    assert isinstance(model.bn1, torch.nn.BatchNorm2d) and model.conv1.weight.dtype == torch.float32
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_in_place_serves_the_callers_network_itself(tiny_model_dir: Path) -> None:
    """``in_place`` prepares the given network (no second one in memory) with the same answers."""
    model, manifest = load_model(tiny_model_dir)
    x = torch.randn(
        4, 1, manifest.input_size, manifest.input_size, generator=torch.Generator().manual_seed(5)
    )
    with CamClassifier(model, manifest.target_layer, bf16=False) as cam:
        copied = cam(x)
    with CamClassifier(model, manifest.target_layer, bf16=False, in_place=True) as cam:
        assert cam.model is model
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        served = cam(x)
    np.testing.assert_allclose(served.probs, copied.probs, atol=1e-5)
    np.testing.assert_allclose(served.maps, copied.maps, atol=1e-4)


def test_predictor_load_serves_the_network_it_loaded(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[torch.nn.Module] = []

    def load_and_keep(model_dir: Path | None = None) -> tuple[torch.nn.Module, object]:
        model, manifest = load_model(model_dir)
        loaded.append(model)
        return model, manifest

    monkeypatch.setattr(predictor_module, "load_model", load_and_keep)
    predictor = Predictor.load(tiny_model_dir, detector="full", bf16=False)
    try:
        assert len(loaded) == 1 and predictor._cam.model is loaded[0]
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded[0].modules())
    finally:
        predictor.close()


def test_serving_copy_gives_the_networks_own_answers(tiny_model_dir: Path) -> None:
    """Folded norms (float32 here) compute what the unfolded network computes."""
    model, manifest = load_model(tiny_model_dir)
    x = torch.randn(4, 1, manifest.input_size, manifest.input_size)
    with CamClassifier(model, manifest.target_layer, bf16=False) as cam, torch.no_grad():
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in cam.model.modules())
        torch.testing.assert_close(cam.model(x), model.eval()(x), atol=1e-4, rtol=1e-4)


def test_region_shares_sum_to_one_and_follow_the_map() -> None:
    cam = np.zeros((48, 48), dtype=np.float32)
    cam[36:40, :] = 1.0  # mouth band in FER framing
    shares = region_shares(cam, None)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert max(shares, key=shares.__getitem__) == "mouth"


def test_reason_names_the_strongest_region_or_says_none_stood_out() -> None:
    cam = np.zeros((48, 48), dtype=np.float32)
    cam[36:40, :] = 1.0
    assert reason_text("happy", region_shares(cam, None)).startswith("happy: mostly the mouth (")
    empty = reason_text("neutral", region_shares(np.zeros((48, 48), dtype=np.float32), None))
    assert empty == "neutral: no part of the face stood out (the heatmap is empty)"
    # the text and the "empty" test the PNG label and the benchmark use agree
    assert map_is_empty(np.zeros((48, 48), dtype=np.float32)) and not map_is_empty(cam)
    assert map_is_empty(np.zeros((0, 0), dtype=np.float32))  # no map at all: nothing stood out


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1e6


@pytest.mark.timeout(600)
def test_predictor_memory_is_flat_over_100_runs(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FakeDetector([_face(60, 40, 100)]), bf16=False)
    data = face_photo(size=(240, 180))
    for _ in range(15):
        predictor.analyze(data)
    gc.collect()
    start = _rss_mb()
    for _ in range(100):
        predictor.analyze(data)
    gc.collect()
    grown = _rss_mb() - start
    predictor.close()
    assert grown < 25, f"RSS grew by {grown:.1f} MB over 100 runs"


def test_prior_relabels_and_re_explains_only_the_senders_face(predictor: Predictor) -> None:
    photo = face_photo(size=(480, 360))
    plain = predictor.analyze(photo)
    main = plain.faces[0]
    least = main.top(2)[1][0]  # the runner-up, made the winner by a strong enough prior
    assert least != main.emotion and not main.prior_applied
    leaned = predictor.analyze(
        photo, personal=Personal(prior={least: 100 * main.confidence / main.probs[least]})
    )
    assert leaned.faces[0].emotion == least and leaned.faces[0].prior_applied
    assert leaned.faces[0].reason.startswith(least)  # the reason names the re-weighted class
    assert sum(leaned.faces[0].probs.values()) == pytest.approx(1.0, abs=1e-4)
    for before, after in zip(plain.faces[1:], leaned.faces[1:], strict=True):  # other people: untouched
        assert after.emotion == before.emotion and not after.prior_applied
        assert after.probs == pytest.approx(before.probs, abs=1e-5)


def test_prior_moves_the_gradcam_target_with_the_label(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with CamClassifier(model, manifest.target_layer, bf16=False) as cam:
        plain = cam(x).probs
        least = np.argsort(plain, 1)[:, -2]  # runner-ups
        weights = np.ones((2, len(manifest.classes)))
        weights[np.arange(2), least] = 100 * plain.max(1) / plain[np.arange(2), least]
        leaned = cam(x, weights)
    assert (leaned.probs.argmax(1) == least).all()
    for i in range(2):
        idx = int(least[i])
        with CamClassifier(model, manifest.target_layer, bf16=False, target=lambda z, k=idx: z[k]) as ref:
            assert np.allclose(leaned.maps[i], ref(x[i : i + 1]).maps[0], atol=1e-5)


def test_calm_baseline_shifts_only_the_senders_face(predictor: Predictor) -> None:
    photo = face_photo(size=(480, 360))
    plain = predictor.analyze(photo)
    main = plain.faces[0]
    # A calm face that reads strongly as this face's top class: that lean is divided out.
    calm = {c: (0.96 if c == main.emotion else 0.04 / 6) for c in main.probs}
    relative = predictor.analyze(photo, personal=Personal(baseline=calm))
    face = relative.faces[0]
    assert face.baseline_applied and not face.prior_applied
    assert face.probs[main.emotion] < main.probs[main.emotion]
    assert face.raw_probs == pytest.approx(main.probs, abs=1e-5)  # the model's own reading is kept
    alpha = predictor.manifest.baseline_alpha
    w = {c: max(p, 0.01) ** -alpha for c, p in calm.items()}
    expected = {c: main.probs[c] * w[c] for c in w}
    total = sum(expected.values())
    assert face.probs == pytest.approx({c: v / total for c, v in expected.items()}, abs=1e-4)
    assert face.emotion == max(expected, key=expected.__getitem__) != main.emotion  # the label moved
    assert face.reason.startswith(face.emotion)
    for before, after in zip(plain.faces[1:], relative.faces[1:], strict=True):  # never other people
        assert not after.baseline_applied and after.probs == pytest.approx(before.probs, abs=1e-5)


def test_faces_past_the_cap_are_counted(tiny_model_dir: Path) -> None:
    model, manifest = load_model(tiny_model_dir)
    crowd = [_face(10 + 45 * (i % 5), 10 + 45 * (i // 5), 40) for i in range(10)]
    p = Predictor(model, manifest, FakeDetector(crowd), bf16=False, max_faces=8)
    try:
        result = p.analyze(face_photo(size=(480, 360)), want_heatmap=False)
    finally:
        p.close()
    assert len(result.faces) == 8 and result.faces_found == 10
