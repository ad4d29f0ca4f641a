"""Compare the offline face detectors (MTCNN vs Haar) on real faces and face-free photos.

Recall: FER2013 val faces (48 px, upscaled 3x and padded with edge pixels so the
detector sees some context). Framing: where MTCNN puts its box inside the FER
crop (used to frame our crops like FER). False positives: face-free sample
photos shipped with matplotlib plus synthetic noise. Latency: the 1-face
grace_hopper photo at working resolution. Small faces: the same FER faces pasted
into a 640x480 photo at a given share of its short side (a group photo's faces),
found with the served smallest face (``MIN_FACE_FRACTION``) and without it.

    python benchmarks/face_detectors.py [--per-class 50] [--threads 1] [--small 0.08 0.1 0.12 0.15]
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

from inference.serve.faces import MIN_FACE_FRACTION, Face, HaarDetector, Landmarks, MtcnnDetector
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


def in_photo(padded: Image.Image, share: float, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A padded FER face (its face 144 of 240 px) pasted so the face spans ``share`` of the short side."""
    scale = share * min(size) / 144
    side = max(1, round(padded.width * scale))
    small = padded.resize((side, side), Image.Resampling.BOX)
    fill = tuple(int(v) for v in np.median(np.asarray(padded).reshape(-1, 3), axis=0))
    canvas = Image.new("RGB", size, fill)  # type: ignore[arg-type]
    canvas.paste(small, ((size[0] - side) // 2, (size[1] - side) // 2))
    return canvas


def small_faces(faces: list[Image.Image], shares: list[float]) -> None:
    """Recall on FER faces pasted small into a 640x480 photo, with and without the smallest-face floor."""
    if not shares:
        return
    print(f"\nsmall faces: {len(faces)} FER faces pasted into a 640x480 photo, recall by face share")
    detectors = {
        f"min face {MIN_FACE_FRACTION:.0%} of short side (served)": MtcnnDetector(),
        "min face 40 px only": MtcnnDetector(min_face_fraction=0.0),
    }
    print(f"{'face share of short side':26} " + " ".join(f"{s:>7.0%}" for s in shares))
    for label, det in detectors.items():
        cells = []
        for share in shares:
            found = sum(1 for img in faces if det.detect(in_photo(img, share)))
            cells.append(f"{found / len(faces):7.1%}")
        print(f"{label:26} " + " ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--val", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--small", type=float, nargs="*", default=[0.06, 0.08, 0.10, 0.12, 0.15, 0.25], metavar="SHARE"
    )
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
    small_faces(faces, args.small)


if __name__ == "__main__":
    main()
