"""The int8 trunk: stored and loaded exactly, served only where it may be, and read like fp32."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from inference.api.manifest import MANIFEST_FILE, ModelManifest, default_model_dir
from inference.serve.checkpoint import load_model
from inference.serve.model import fold_batchnorm
from inference.serve.precision import resolve_precision
from inference.serve.predictor import Predictor
from inference.serve.quantize import (
    INT8_FILE,
    Int8Net,
    int8_kernels,
    load_trunk,
    quantize_trunk,
    save_trunk,
)
from inference.serve.settings import EngineSettings
from inference.training.quantize_check import top_region, top_region_iou

CPU = torch.device("cpu")
needs_kernels = pytest.mark.skipif(not int8_kernels(), reason="no x86 int8 kernels in this PyTorch/CPU")


def test_precision_is_int8_only_where_it_may_be() -> None:
    def pick(requested: str, **kw: object) -> str:
        args: dict[str, object] = {
            "bf16": None,
            "device": CPU,
            "has_int8": True,
            "int8_meets_rule": True,
            "kernels": True,
        } | kw
        return resolve_precision(requested, **args)[0]  # type: ignore[arg-type]

    assert pick("auto") == "int8"
    assert pick("auto", int8_meets_rule=False) in ("bf16", "fp32")  # measured worse: not by default
    assert pick("int8", int8_meets_rule=False) == "int8"  # asked for: the operator's call
    assert pick("int8", has_int8=False) in ("bf16", "fp32")
    assert pick("int8", kernels=False) in ("bf16", "fp32")
    assert pick("int8", device=torch.device("cuda")) == "bf16"  # int8 is a CPU path
    assert pick("auto", bf16=False) == "fp32"  # MOODRING_BF16=false keeps its meaning
    assert pick("fp32") == "fp32" and pick("bf16") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        pick("int4")


def test_settings_take_the_precision_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOODRING_PRECISION", raising=False)
    assert EngineSettings().precision == "auto"
    monkeypatch.setenv("MOODRING_PRECISION", "int8")
    assert EngineSettings().precision == "int8"
    monkeypatch.setenv("MOODRING_PRECISION", "int3")
    with pytest.raises(ValueError):
        EngineSettings()


@needs_kernels
def test_the_int8_file_loads_back_to_the_same_network(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, _ = load_model(tiny_model_dir)
    model = fold_batchnorm(model.eval())
    faces = torch.randn(24, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    trunk = quantize_trunk(model, faces)
    first = save_trunk(trunk, tmp_path / "a.safetensors")
    assert save_trunk(quantize_trunk(model, faces), tmp_path / "b.safetensors") == first  # reproducible
    loaded = load_trunk(model, tmp_path / "a.safetensors", 32)
    with torch.no_grad():
        assert torch.equal(trunk(faces), loaded(faces))
        float_out = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.conv1(faces))))))
        int8_out = loaded(faces)
    assert int8_out.dtype == torch.float32 and int8_out.shape == float_out.shape
    assert float((int8_out - float_out).norm() / float_out.norm()) < 0.25  # int8 rounding, not garbage


def _with_int8(tiny_model_dir: Path, tmp_path: Path, meets_rule: bool = True) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    model, manifest = load_model(folder)
    trunk = quantize_trunk(fold_batchnorm(model.eval()), torch.randn(16, 1, 32, 32))
    sha = save_trunk(trunk, folder / INT8_FILE)
    manifest.model_copy(
        update={"int8_file": INT8_FILE, "int8_sha256": sha, "int8_meets_rule": meets_rule}
    ).dump(folder / MANIFEST_FILE)
    return folder


@needs_kernels
def test_the_predictor_serves_int8_and_falls_back_with_a_log_line(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _with_int8(tiny_model_dir, tmp_path)
    served = Predictor.load(folder, detector="full", precision="auto")
    assert served.precision == "int8" and isinstance(served._cam.model, Int8Net)
    result = served.analyze(_jpeg(Image.new("L", (64, 64), 128)))
    assert result.faces and result.heatmap_jpeg
    served.close()

    (folder / INT8_FILE).write_bytes(b"not the file the manifest names")
    with caplog.at_level(logging.WARNING, logger="inference.serve.precision"):
        fallback = Predictor.load(folder, detector="full", precision="int8")
    assert fallback.precision in ("bf16", "fp32")
    assert any("int8 was asked for" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
    fallback.close()

    (folder / INT8_FILE).unlink()
    with caplog.at_level(logging.INFO, logger="inference.serve.precision"):
        caplog.clear()
        quiet = Predictor.load(folder, detector="full")  # auto: falls back, says why, no alarm
    assert quiet.precision in ("bf16", "fp32")
    assert any("can't be used" in r.getMessage() for r in caplog.records)
    quiet.close()


@needs_kernels
def test_a_cpu_without_the_kernels_is_served_float(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _with_int8(tiny_model_dir, tmp_path)
    import inference.serve.quantize as quantize

    monkeypatch.setattr(quantize, "int8_kernels", lambda: False)
    with caplog.at_level(logging.WARNING, logger="inference.serve.precision"):
        predictor = Predictor.load(folder, detector="full", precision="int8")
    assert predictor.precision in ("bf16", "fp32")
    assert any("lacks the x86 int8 kernels" in r.getMessage() for r in caplog.records)
    predictor.close()


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


def _portraits() -> list[bytes]:
    """Fixed faces: the sample portrait that ships with matplotlib, and five edits of it."""
    from matplotlib import cbook

    base = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    edits = [
        base,
        ImageOps.mirror(base),
        ImageEnhance.Brightness(base).enhance(0.6),
        ImageEnhance.Contrast(base).enhance(1.5),
        base.rotate(8, fillcolor=(128, 128, 128)),
        ImageOps.grayscale(base),
    ]
    return [_jpeg(im) for im in edits]


@needs_kernels
def test_an_int8_reading_agrees_with_fp32_on_fixed_faces() -> None:
    """The shipped int8 trunk (as served: bf16 tail where the CPU has it) against fp32 on six
    fixed faces: the same label on every face, probabilities within 0.2, the same region named
    first in the reason on at least 5 of 6 (91.5 % of 200 PublicTest faces in the model card),
    and Grad-CAM maps whose top-20 % regions overlap (IoU ≥ 0.75 on each, ≥ 0.85 on average)."""
    from inference.serve.faces import build_detector, crop_face

    manifest = ModelManifest.load(default_model_dir() / MANIFEST_FILE)
    if not manifest.int8_file:
        pytest.fail("the shipped model has no int8 trunk: run `moodring quantize`")
    photos = _portraits()
    detector = build_detector("mtcnn")
    crops = []
    for data in photos:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        face = max(detector.detect(image), key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        crops.append(crop_face(image, face, size=manifest.input_size).pixels)
    readings, maps = {}, {}
    for precision in ("fp32", "int8"):
        predictor = Predictor.load(detector="mtcnn", precision=precision)
        assert predictor.precision == precision
        readings[precision] = [predictor.analyze(p).faces[0] for p in photos]
        maps[precision] = predictor.classify_crops(crops)[1]
        predictor.close()
    same_reason = 0
    for ref, q in zip(readings["fp32"], readings["int8"], strict=True):
        assert q.emotion == ref.emotion
        assert max(abs(q.probs[c] - ref.probs[c]) for c in ref.probs) < 0.2
        same_reason += max(q.regions, key=q.regions.__getitem__) == max(
            ref.regions, key=ref.regions.__getitem__
        )
    assert same_reason >= 5
    assert sum(top_region(a) == top_region(b) for a, b in zip(maps["fp32"], maps["int8"], strict=True)) >= 5
    ious = top_region_iou(maps["fp32"], maps["int8"])
    assert ious.min() >= 0.75 and ious.mean() >= 0.85, ious
