"""Crop framing on real photos: accuracy of the full pipeline as the FER-style crop around the
detector's box grows, shrinks or moves (issue 19: "check the crop framing on real photos").

python -m benchmarks.framing [--data ../shared/datasets/taiwanese_dev] [--model-dir DIR]
    [--fractions 0.9 0.95 1.0 1.05 1.1 1.2] [--shifts -0.06 -0.03 -0.01 0.02] [--tta none ten]

MTCNN runs once per photo (largest face, as served); each framing then cuts its own 48 px crop
(``inference.serve.faces.crop_face``: ``box_fraction`` = box side / crop side, so a smaller
fraction is a looser crop; ``center_shift`` moves the crop centre by that share of its side,
negative = up) and the committed model classifies it. The served framing (``FER_FRAMING``) was
measured on FER2013 itself (box 1.05x the crop, centre 1 % of the side lower). This is a dev
set: a framing picked here is optimistic by that choice, and is not a fitted weight.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from inference.serve.checkpoint import load_model
from inference.serve.faces import FER_FRAMING, Face, Framing, build_detector, crop_face
from inference.serve.precision import resolve_bf16
from inference.training.data import list_imagefolder
from inference.training.photos import largest_faces
from inference.training.predict import predict_probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/taiwanese_dev"))
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.9, 0.95, 1.0, 1.05, 1.1, 1.2])
    ap.add_argument("--shifts", type=float, nargs="+", default=[-0.06, -0.03, -0.01, 0.02])
    ap.add_argument("--tta", nargs="+", default=["none", "ten"], choices=["none", "flip", "ten"])
    args = ap.parse_args()
    model, manifest = load_model(args.model_dir)
    classes = tuple(str(c) for c in manifest.classes)
    detector = build_detector("mtcnn")
    bf16 = resolve_bf16(None)
    items = list_imagefolder(args.data, classes)
    found: list[tuple[Image.Image, Face, int]] = [
        (image, face, label)
        for (image, face), (_, label) in zip(
            largest_faces([p for p, _ in items], detector), items, strict=True
        )
        if image is not None and face is not None
    ]
    labels = np.array([label for _, _, label in found])
    print(
        f"{args.data}: {len(items)} photos, a face in {len(found)}; served framing: box "
        f"{FER_FRAMING.box_fraction} of the crop, centre shift {FER_FRAMING.center_shift}"
    )
    accuracy: dict[tuple[float, float, str], float] = {}
    for frac in args.fractions:
        for shift in args.shifts:
            framing = Framing(box_fraction=frac, center_shift=shift)
            crops = [  # cut once per framing, scored with every TTA
                crop_face(image, Face(f.box, f.score, f.landmarks, framing), manifest.input_size).pixels
                for image, f, _ in found
            ]
            for tta in args.tta:
                probs = predict_probs(model, crops, manifest, tta=tta, bf16=bf16)
                accuracy[frac, shift, tta] = float((probs.argmax(1) == labels).mean())
    for tta in args.tta:
        print(f"\naccuracy, tta={tta} (rows: box side / crop side; columns: centre shift, - = up)")
        print(f"{'':>6} " + " ".join(f"{s:>7.2f}" for s in args.shifts))
        for frac in args.fractions:
            cells = []
            for shift in args.shifts:
                served = frac == FER_FRAMING.box_fraction and shift == FER_FRAMING.center_shift
                cell = f"{accuracy[frac, shift, tta]:.1%}" + ("*" if served else "")
                cells.append(f"{cell:>7}")
            print(f"{frac:>6.2f} " + " ".join(cells))
    print("\n* the served framing")


if __name__ == "__main__":
    main()
