"""Compare the offline face detectors (MTCNN vs Haar) on real faces and face-free photos.

Recall: FER2013 val faces (48 px, upscaled 3x and padded with edge pixels so the
detector sees some context). Framing: where MTCNN puts its box inside the FER
crop (used to frame our crops like FER). False positives: face-free sample
photos shipped with matplotlib plus synthetic noise. Latency: the 1-face
grace_hopper photo at working resolution.

    python benchmarks/face_detectors.py [--per-class 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib import cbook
from PIL import Image, ImageOps

from inference.serve.faces import Face, HaarDetector, Landmarks, MtcnnDetector
from inference.training.data import list_imagefolder


class FacenetMtcnn:
    """facenet-pytorch's own ``MTCNN.detect`` (per-box crop loop): the reference for ours."""

    name = "mtcnn-ref"

    def __init__(self, threshold: float = 0.92, max_side: int = 640) -> None:
        from facenet_pytorch.models.mtcnn import MTCNN

        self._mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=40, select_largest=False)
        self._threshold, self._max_side = threshold, max_side

    def detect(self, image: Image.Image) -> list[Face]:
        scale = min(1.0, self._max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)))
        with torch.inference_mode():
            boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        return [
            Face(
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                float(p),
                Landmarks(*((float(x), float(y)) for x, y in pts)),
            ).scaled(1 / scale)
            for b, p, pts in zip(boxes, probs, points, strict=True)
            if float(p) >= self._threshold
        ]


def padded_fer(path: Path) -> Image.Image:
    face = Image.open(path).convert("L").resize((144, 144), Image.Resampling.BICUBIC)
    arr = np.pad(np.asarray(face), 48, mode="edge")
    return Image.fromarray(arr).convert("RGB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--val", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    items = list_imagefolder(args.val)
    by_class: dict[int, list[Path]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    sample = [p for paths in by_class.values() for p in rng.sample(paths, min(args.per_class, len(paths)))]
    faces = [padded_fer(p) for p in sample]

    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    sample_dir = Path(cbook.get_sample_data("logo2.png", asfileobj=False)).parent
    negatives = [
        Image.open(sample_dir / n).convert("RGB") for n in ("logo2.png", "Minduka_Present_Blue_Pack.png")
    ]
    nrng = np.random.default_rng(0)
    negatives += [Image.fromarray(nrng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(3)]
    negatives += [ImageOps.mirror(n) for n in negatives[:2]]

    print(
        f"{len(faces)} FER val faces (padded 240 px), {len(negatives)} face-free images, "
        f"threads={args.threads}"
    )
    print(f"{'detector':8} {'recall':>7} {'fp imgs':>8} {'hopper':>7} {'p50 ms':>7} {'p95 ms':>7}")
    for det in (MtcnnDetector(), FacenetMtcnn(), HaarDetector()):
        found = 0
        fractions, shifts = [], []
        for img in faces:
            hits = det.detect(img)
            if hits:
                found += 1
                best = max(hits, key=lambda f: f.area)
                x0, y0, x1, y1 = best.box
                fractions.append(max(x1 - x0, y1 - y0) / 144)
                shifts.append((120 - (y0 + y1) / 2) / 144)
        fp = sum(1 for img in negatives if det.detect(img))
        n_hopper = len(det.detect(hopper))
        times = []
        for _ in range(15):
            t = time.perf_counter()
            det.detect(hopper)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(
            f"{det.name:8} {found / len(faces):7.1%} {fp:>5}/{len(negatives)} {n_hopper:>7} "
            f"{statistics.median(times):7.1f} {times[int(len(times) * 0.95) - 1]:7.1f}"
        )
        if fractions:
            print(
                f"         framing: box side / FER crop side median {statistics.median(fractions):.3f}, "
                f"box centre above crop centre by {statistics.median(shifts):.3f} of the side"
            )


if __name__ == "__main__":
    main()
