"""The GPU path, exercised on the CPU: device choice, autocast dtype, one batched pass with the
photos of a batch prepared on several threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.api.errors import BadImage
from inference.serve.checkpoint import load_model
from inference.serve.device import DeviceUnavailable, autocast_dtype, resolve_device
from inference.serve.explain import CamClassifier
from inference.serve.faces import FullFrameDetector
from inference.serve.predictor import Predictor
from tests.conftest import face_photo

ROOT = Path(__file__).resolve().parents[3]


def test_device_choice() -> None:
    assert resolve_device("auto", cuda_available=lambda: False) == torch.device("cpu")
    assert resolve_device("auto", cuda_available=lambda: True) == torch.device("cuda")
    assert resolve_device("cpu", cuda_available=lambda: True) == torch.device("cpu")
    assert resolve_device("cuda", cuda_available=lambda: True) == torch.device("cuda")
    with pytest.raises(DeviceUnavailable):
        resolve_device("cuda", cuda_available=lambda: False)


def test_autocast_dtype_follows_the_device() -> None:
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, None, cuda_bf16=lambda: True) is torch.bfloat16  # H100/H200, A100
    assert autocast_dtype(cuda, None, cuda_bf16=lambda: False) is torch.float16  # older GPUs
    assert autocast_dtype(cuda, False, cuda_bf16=lambda: True) is None  # float32 asked for
    assert autocast_dtype(torch.device("cpu"), True) is torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), False) is None


@pytest.mark.parametrize("bf16", [False, True])
def test_cam_classifier_on_an_explicit_device_returns_float32_numpy(tiny_model_dir: Path, bf16: bool) -> None:
    model, manifest = load_model(tiny_model_dir)
    batch = torch.rand(3, 1, manifest.input_size, manifest.input_size)
    with CamClassifier(model, manifest.target_layer, bf16=bf16, device=torch.device("cpu")) as cam:
        assert cam.dtype == (torch.bfloat16 if bf16 else None)
        out = cam(batch)
    assert out.probs.dtype == np.float32 and out.maps.dtype == np.float32
    assert out.probs.shape == (3, len(manifest.classes)) and np.allclose(out.probs.sum(1), 1, atol=1e-3)
    assert out.maps.shape == (3, manifest.input_size, manifest.input_size)


class _Counted:
    """The real CamClassifier, counting its batched passes."""

    def __init__(self, cam: CamClassifier) -> None:
        self.cam = cam
        self.calls: list[int] = []

    def __call__(self, batch: torch.Tensor, weights: np.ndarray | None = None) -> object:
        self.calls.append(batch.shape[0])
        return self.cam(batch, weights)

    def close(self) -> None:
        self.cam.close()


def test_prepare_threads_give_the_same_results_in_order_with_one_batched_pass(tiny_model_dir: Path) -> None:
    photos = [face_photo(size=(96 + 16 * i, 96)) for i in range(5)]
    photos.insert(2, b"not an image")
    answers = []
    for threads in (1, 3):
        model, manifest = load_model(tiny_model_dir)
        predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False, prepare_threads=threads)
        counted = _Counted(predictor._cam)
        predictor._cam = counted  # type: ignore[assignment]
        try:
            answers.append(predictor.analyze_many(photos, [True] * len(photos)))
        finally:
            predictor.close()
        assert counted.calls == [5]  # one forward + Grad-CAM over every face of the batch
    single, threaded = answers
    assert isinstance(single[2], BadImage) and isinstance(threaded[2], BadImage)
    for a, b in zip(single, threaded, strict=True):
        if isinstance(a, BadImage):
            continue
        assert a.image_size == b.image_size and a.heatmap_png is not None and b.heatmap_png is not None
        assert [f.emotion for f in a.faces] == [f.emotion for f in b.faces]
        assert np.allclose([f.confidence for f in a.faces], [f.confidence for f in b.faces], atol=1e-4)


def test_load_picks_the_cpu_here_with_one_prepare_thread(tiny_model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto would pick it")
    predictor = Predictor.load(tiny_model_dir, "full", device="auto")
    try:
        assert predictor.device == torch.device("cpu") and predictor._pool is None
    finally:
        predictor.close()


def test_worker_asked_for_cuda_without_a_gpu_exits_2_with_one_line(tiny_model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODRING_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "MOODRING_DEVICE": "cuda",
        "MOODRING_MODEL_DIR": str(tiny_model_dir),
        "MOODRING_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "inference.worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        "MOODRING_DEVICE=cuda but PyTorch sees no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    )
