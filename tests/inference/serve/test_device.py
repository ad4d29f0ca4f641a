"""The GPU path, exercised on the CPU: device choice, autocast dtype, one batched pass with the
photos of a batch prepared on several threads."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.api.errors import BadImage, NoFaceFound
from inference.serve.checkpoint import load_model
from inference.serve.detectors.full import FullFrameDetector
from inference.serve.detectors.mtcnn import MtcnnDetector
from inference.serve.device import DeviceUnavailable, autocast_dtype, resolve_device
from inference.serve.explain import CamClassifier
from inference.serve.faces import Face
from inference.serve.predictor import Analysis, Predictor
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

    def __call__(
        self, batch: torch.Tensor, weights: np.ndarray | None = None, adjust: object = None
    ) -> object:
        self.calls.append(batch.shape[0])
        return self.cam(batch, weights, adjust)  # type: ignore[arg-type]

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
        assert a.image_size == b.image_size and a.heatmap_jpeg is not None and b.heatmap_jpeg is not None
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


def _photos_with_and_without_faces() -> list[Image.Image]:
    from inference.serve.analyze import sample_photo

    portrait = Image.open(sample_photo()).convert("RGB")
    return [
        portrait,
        portrait.resize((portrait.width // 2, portrait.height // 2)),
        Image.new("RGB", (300, 200), (120, 130, 140)),  # no face
        portrait.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        portrait.resize((900, 700)),
    ]


def test_mtcnn_detects_a_batch_of_photos_as_it_detects_each_alone() -> None:
    detector = MtcnnDetector()
    photos = _photos_with_and_without_faces()
    alone = [detector.detect(p) for p in photos]
    together = detector.detect_many(photos)
    assert [len(f) for f in alone] == [len(f) for f in together] == [1, 1, 0, 1, 1]
    for a, b in zip(alone, together, strict=True):
        for fa, fb in zip(a, b, strict=True):
            assert np.allclose(fa.box, fb.box, atol=1e-3) and abs(fa.score - fb.score) < 1e-4
            assert fa.landmarks is not None and fb.landmarks is not None
            assert np.allclose(fa.landmarks, fb.landmarks, atol=1e-3)


class _CountingMtcnn(MtcnnDetector):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.singles = 0

    def detect(self, image: Image.Image) -> list[Face]:
        self.singles += 1
        return MtcnnDetector.detect_many(self, [image])[0]  # uncounted: one photo alone

    def detect_many(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        self.batches.append(len(images))
        return super().detect_many(images)


def test_predictor_detects_a_batch_at_once_when_asked_as_on_a_gpu(tiny_model_dir: Path) -> None:
    photos = []
    for p in _photos_with_and_without_faces():
        buf = io.BytesIO()
        p.save(buf, format="JPEG", quality=92)
        photos.append(buf.getvalue())
    photos.insert(1, b"not an image")
    outs = []
    for batch_detect in (False, True):
        model, manifest = load_model(tiny_model_dir)
        detector = _CountingMtcnn()
        predictor = Predictor(model, manifest, detector, bf16=False, batch_detect=batch_detect)
        try:
            outs.append(predictor.analyze_many(photos, [False] * len(photos)))
        finally:
            predictor.close()
        if batch_detect:  # one detection call for the 5 decodable photos (the bad one stays out)
            assert detector.batches == [5] and detector.singles == 0
        else:
            assert detector.batches == [] and detector.singles == 5
    one, batched = outs
    assert [type(r).__name__ for r in one] == [type(r).__name__ for r in batched]
    assert isinstance(one[1], BadImage) and isinstance(one[3], NoFaceFound)
    for a, b in zip(one, batched, strict=True):
        if isinstance(a, Analysis) and isinstance(b, Analysis):
            assert np.allclose([f.box for f in a.faces], [f.box for f in b.faces], atol=1e-3)
            assert [f.emotion for f in a.faces] == [f.emotion for f in b.faces]
            assert "detect" in b.timings_ms and "decode" in b.timings_ms


def test_use_threads_caps_numpy_blas_as_well_as_torch() -> None:
    """A worker's thread count holds for numpy's own BLAS pool too (in a fresh process: the
    setting is process-wide)."""
    code = (
        "from threadpoolctl import threadpool_info\n"
        "import torch\n"
        "from inference.serve.device import use_threads\n"
        "use_threads(1)\n"
        "blas = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "print(torch.get_num_threads(), *blas)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_threads, *blas = out.stdout.split()
    assert torch_threads == "1" and blas and set(blas) == {"1"}
