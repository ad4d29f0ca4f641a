"""How real-photo face crops differ from FER2013's, and whether a test-time fix closes the gap.

python -m benchmarks.photo_gap [--photos ../shared/datasets/taiwanese_dev]
    [--fer ../shared/datasets/fer2013/val] [--model-dir DIR] [--part all|fixes|grey]

MTCNN runs once per photo (largest face, the served FER framing); each crop is then compared
with FER2013's faces (mean grey level, per-face contrast = standard deviation, sharpness = mean
absolute difference of neighbouring pixels), and the committed model scores the crops after
each candidate fix, single view, on both sets: a fix that helps photos must not cost FER2013.
The last rows re-weight the model's probabilities by FER2013 Training's class frequencies to a
power tau (a label-shift correction: photos need not be 25 % happy like FER2013). The grey part
cuts each photo's crop from other colour-to-grey conversions than the served ITU-R 601 luma (the
issue's "colour->grey conversions of different weights"; FER2013 is grey already, so it only
applies to photos). This is a dev set: any fix picked here is a scalar chosen on it, not a
fitted weight.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from inference.serve.checkpoint import load_model
from inference.serve.faces import build_detector, crop_face
from inference.serve.precision import resolve_bf16
from inference.training.data import list_imagefolder
from inference.training.photos import largest_faces
from inference.training.predict import predict_probs

Fix = Callable[[np.ndarray], np.ndarray]


def _pil(f: Callable[[Image.Image], Image.Image]) -> Fix:
    return lambda a: np.asarray(f(Image.fromarray(a)))


def _contrast_to(std: float, mean: float) -> Fix:
    def fix(a: np.ndarray) -> np.ndarray:
        x = a.astype(np.float32)
        x = (x - x.mean()) / (x.std() + 1e-3) * std + mean
        out: np.ndarray = np.clip(x, 0, 255).round().astype(np.uint8)
        return out

    return fix


def _gamma(g: float) -> Fix:
    return lambda a: (255 * (a / 255.0) ** g).round().astype(np.uint8)


# R, G, B weights of the colour-to-grey conversions compared (the first is PIL's "L", served)
GREYS: dict[str, tuple[float, float, float]] = {
    "ITU-R 601 luma (served)": (0.299, 0.587, 0.114),
    "ITU-R 709 luma": (0.2126, 0.7152, 0.0722),
    "channel mean": (1 / 3, 1 / 3, 1 / 3),
    "green only": (0.0, 1.0, 0.0),
    "red only": (1.0, 0.0, 0.0),
    "red-free (G 0.7, B 0.3)": (0.0, 0.7, 0.3),
}


def _stats(crops: list[np.ndarray]) -> tuple[float, float, float]:
    a = np.stack(crops).astype(np.float32)
    sharp = float(np.abs(np.diff(a, axis=2)).mean())
    return float(a.mean()), float(a.reshape(len(a), -1).std(1).mean()), sharp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photos", type=Path, default=Path("../shared/datasets/taiwanese_dev"))
    ap.add_argument("--fer", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--train", type=Path, default=Path("../shared/datasets/fer2013/train"))
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--part", choices=["all", "fixes", "grey"], default="all")
    args = ap.parse_args()
    model, manifest = load_model(args.model_dir)
    classes = tuple(str(c) for c in manifest.classes)
    bf16 = resolve_bf16(None)
    detector = build_detector("mtcnn")
    greys: dict[str, list[np.ndarray]] = {name: [] for name in GREYS}
    labels = []
    items = list_imagefolder(args.photos, classes)
    for (image, face), (_, label) in zip(largest_faces([p for p, _ in items], detector), items, strict=True):
        if image is not None and face is not None:
            rgb = image.convert("RGB")
            for name, (r, g, b) in GREYS.items():
                grey = rgb.convert("L", matrix=(r, g, b, 0.0))
                greys[name].append(crop_face(grey, face, manifest.input_size).pixels)
            labels.append(label)
    crops = next(iter(greys.values()))
    y = np.array(labels)
    neutral = classes.index("neutral")
    if args.part in ("all", "grey"):
        print(f"\n{'colour to grey':>24}  photos  called neutral  contrast  sharpness")
        for name, cs in greys.items():
            p = predict_probs(model, cs, manifest, tta="none", bf16=bf16)
            _, contrast, sharp = _stats(cs)
            print(
                f"{name:>24}  {(p.argmax(1) == y).mean():6.1%}  {(p.argmax(1) == neutral).mean():13.0%}"
                f"  {contrast:8.1f}  {sharp:9.1f}"
            )
        if args.part == "grey":
            return
    fer_items = list_imagefolder(args.fer, classes)
    fer = [np.asarray(Image.open(p).convert("L")) for p, _ in fer_items]
    fer_y = np.array([label for _, label in fer_items])
    fer_mean, fer_std, _ = _stats(fer)
    print(f"{args.photos}: faces in {len(crops)} photos; {args.fer}: {len(fer)} faces")
    for name, cs in (("photos", crops), ("FER2013", fer)):
        m, s, g = _stats(cs)
        print(f"{name:>8}: mean grey {m:.1f}, contrast (std) {s:.1f}, sharpness {g:.1f}")

    fixes: dict[str, Fix] = {
        "none (served)": lambda a: a,
        "contrast to FER's": _contrast_to(fer_std, fer_mean),
        "histogram equalised": _pil(ImageOps.equalize),
        "autocontrast (1 %)": _pil(lambda im: ImageOps.autocontrast(im, cutoff=1)),
        "blur sigma 0.5": _pil(lambda im: im.filter(ImageFilter.GaussianBlur(0.5))),
        "blur sigma 0.8": _pil(lambda im: im.filter(ImageFilter.GaussianBlur(0.8))),
        "unsharp mask": _pil(lambda im: im.filter(ImageFilter.UnsharpMask(1, 80, 2))),
        "gamma 0.8": _gamma(0.8),
        "gamma 1.25": _gamma(1.25),
    }
    print(f"\n{'fix':>22}  photos  called neutral  FER2013")
    for name, fix in fixes.items():
        p = predict_probs(model, [fix(c) for c in crops], manifest, tta="none", bf16=bf16)
        q = predict_probs(model, [fix(c) for c in fer], manifest, tta="none", bf16=bf16)
        print(
            f"{name:>22}  {(p.argmax(1) == y).mean():6.1%}  {(p.argmax(1) == neutral).mean():13.0%}"
            f"  {(q.argmax(1) == fer_y).mean():7.1%}"
        )
    train_labels = [label for _, label in list_imagefolder(args.train, classes)]
    counts = np.bincount(train_labels, minlength=len(classes))
    log_prior = np.log(counts / counts.sum())
    p = predict_probs(model, crops, manifest, tta="none", bf16=bf16)
    q = predict_probs(model, fer, manifest, tta="none", bf16=bf16)
    for tau in (0.25, 0.5, 0.75, 1.0):
        sp, sq = np.log(p) - tau * log_prior, np.log(q) - tau * log_prior
        print(
            f"{'prior^-' + str(tau):>22}  {(sp.argmax(1) == y).mean():6.1%}  "
            f"{(sp.argmax(1) == neutral).mean():13.0%}  {(sq.argmax(1) == fer_y).mean():7.1%}"
        )


if __name__ == "__main__":
    main()
