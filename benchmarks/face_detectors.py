"""Compare the offline face detectors (MTCNN vs Haar) on real faces and face-free photos.

Recall: FER2013 val faces (48 px, upscaled 3x and padded with edge pixels so the
detector sees some context). Framing: where MTCNN puts its box inside the FER
crop (used to frame our crops like FER). False positives: face-free sample
photos shipped with matplotlib plus synthetic noise. Latency: the 1-face
grace_hopper photo at working resolution. Small faces: the same FER faces pasted
into a 640x480 photo at a given share of its short side (a group photo's faces),
found with the served smallest face (``MIN_FACE_FRACTION``, ``SKIP_LEVELS``) and without it. Close-ups: real
colour portraits (``--closeups``, default taiwanese_dev), the face found on the whole photo, a
square window around its centre whose side is a share of the face box (below 1 the face overflows
the frame, as with a phone held close), resized to 720 px; found = a box that covers the window's
centre (the face's own centre).

    python benchmarks/face_detectors.py [--per-class 50] [--threads 1] [--small 0.08 0.1 0.12 0.15]
        [--closeups DIR] [--windows 1.6 1.2 1.0 0.85 0.7 0.6] [--write-closeups DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import cbook
from PIL import Image, ImageOps

from inference.serve.detectors.haar import HaarDetector
from inference.serve.detectors.mtcnn import MIN_FACE_FRACTION, SKIP_LEVELS, MtcnnDetector
from inference.serve.faces import Face, Landmarks
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


# the first pass's smallest face: the floor, two pyramid levels coarser (MTCNN's factor 0.709)
FIRST_PASS = f"first pass only ({MIN_FACE_FRACTION / 0.709**SKIP_LEVELS:.0%})"


def small_faces(faces: list[Image.Image], shares: list[float]) -> None:
    """Recall on FER faces pasted small into a 640x480 photo, with and without the smallest-face floor."""
    if not shares:
        return
    print(f"\nsmall faces: {len(faces)} FER faces pasted into a 640x480 photo, recall by face share")
    detectors = {
        "served (+ second look)": MtcnnDetector(),
        "served, no level skipped": MtcnnDetector(skip_levels=0),
        FIRST_PASS: MtcnnDetector(fine_pass=False, close_ups=False),
        "min face 40 px, one pass": MtcnnDetector(
            min_face_fraction=0.0, skip_levels=0, fine_pass=False, close_ups=False
        ),
    }
    print(f"{'face share of short side':26} " + " ".join(f"{s:>7.0%}" for s in shares))
    for label, det in detectors.items():
        cells = []
        for share in shares:
            found = sum(1 for img in faces if det.detect(in_photo(img, share)))
            cells.append(f"{found / len(faces):7.1%}")
        print(f"{label:26} " + " ".join(cells))


def close_up(photo: Image.Image, face: Face, window: float, side: int = 720) -> Image.Image:
    """A square window of ``window`` x the face box's side around its centre, resized to ``side``."""
    x0, y0, x1, y1 = face.box
    half = window * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return photo.crop(box).resize((side, side), Image.Resampling.BILINEAR)


def covers_centre(faces: list[Face], side: int = 720) -> bool:
    c = side / 2
    return any(f.box[0] <= c <= f.box[2] and f.box[1] <= c <= f.box[3] for f in faces)


def close_ups(root: Path, windows: list[float], limit: int, write: Path | None = None) -> None:
    """Recall on close-up windows of real portraits (a face filling or overflowing the frame).

    ``write``: also save each window as ``write/<window>/<class>/<name>`` (ImageFolder), for
    ``moodring evaluate write/0.70 --detect`` (how well close-ups are *read*; never commit them).
    """
    if not windows:
        return
    if not root.is_dir():
        print(f"\nclose-ups: {root} not found, skipped")
        return
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:limit]
    finder = MtcnnDetector(min_face_fraction=0.0, skip_levels=0)
    photos = []
    for path in paths:
        photo = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        faces = finder.detect(photo)
        if faces:
            photos.append((photo, max(faces, key=lambda f: f.area)))
            if write is not None:
                for window in windows:
                    folder = write / f"{window:.2f}" / path.parent.name
                    folder.mkdir(parents=True, exist_ok=True)
                    close_up(photo, photos[-1][1], window).save(folder / f"{path.stem}.jpg", quality=92)
    print(
        f"\nclose-ups: {len(photos)} of {len(paths)} photos under {root} with a face; "
        "found = a box over the face centre, window resized to 720 px"
    )
    detectors: dict[str, Any] = {
        "served (+ second look)": MtcnnDetector(),
        "served, no level skipped": MtcnnDetector(skip_levels=0),
        FIRST_PASS: MtcnnDetector(fine_pass=False, close_ups=False),
        "facenet-pytorch MTCNN (40 px)": FacenetMtcnn(),
    }
    print(f"{'window / face box side':26} " + " ".join(f"{w:>7.2f}" for w in windows))
    for label, det in detectors.items():
        cells = []
        for window in windows:
            views = (close_up(photo, face, window) for photo, face in photos)
            found = sum(1 for view in views if covers_centre(det.detect(view)))
            cells.append(f"{found / len(photos):7.1%}")
        print(f"{label:26} " + " ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--val", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--small", type=float, nargs="*", default=[0.06, 0.08, 0.10, 0.12, 0.15, 0.25], metavar="SHARE"
    )
    ap.add_argument("--closeups", type=Path, default=Path("../shared/datasets/taiwanese_dev"))
    ap.add_argument("--closeup-limit", type=int, default=1000, help="at most this many portraits")
    ap.add_argument("--write-closeups", type=Path, default=None, metavar="DIR", help="save the windows too")
    ap.add_argument(
        "--windows", type=float, nargs="*", default=[1.6, 1.2, 1.0, 0.85, 0.7, 0.6], metavar="SHARE"
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
    # blobs at three scales (smooth noise: skin-like patches, no face), stripes, a checkerboard
    for cells in (4, 12, 40):
        low = nrng.integers(0, 256, (cells * 3 // 4, cells, 3), dtype=np.uint8)
        negatives.append(Image.fromarray(low).resize((640, 480), Image.Resampling.BICUBIC))
    yy, xx = np.mgrid[0:480, 0:640]
    stripes = (127 + 120 * np.sin(xx / 9.0 + yy / 23.0)).astype(np.uint8)
    negatives.append(Image.fromarray(np.stack([stripes, stripes // 2 + 60, 255 - stripes], axis=2)))
    board = (((xx // 40) + (yy // 40)) % 2 * 200 + 30).astype(np.uint8)
    negatives.append(Image.fromarray(board).convert("RGB"))

    print(
        f"{len(faces)} FER val faces (padded 240 px), {len(negatives)} face-free images, "
        f"threads={args.threads}"
    )
    print(f"{'detector':8} {'recall':>7} {'fp imgs':>8} {'hopper':>7} {'p50 ms':>7} {'p95 ms':>7}")
    first_pass = MtcnnDetector(fine_pass=False, close_ups=False)
    first_pass.name = "mtcnn-1st"
    for det in (MtcnnDetector(), first_pass, FacenetMtcnn(), HaarDetector()):
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
    close_ups(args.closeups, args.windows, args.closeup_limit, args.write_closeups)


if __name__ == "__main__":
    main()
