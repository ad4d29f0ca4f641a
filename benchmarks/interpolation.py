"""Weight interpolation between the served model and a fine-tune of it (WiSE-FT), measured.

python -m benchmarks.interpolation TUNED [--base DIR] [--alphas 0 0.25 0.5 0.75 1]
    [--fer ../shared/datasets/fer2013/val] [--photos ../shared/datasets/taiwanese_dev]
    [--fer-tta none] [--photo-tta none ten]

For each alpha the network (1 - alpha) x BASE + alpha x TUNED (every weight and BatchNorm
statistic; ``inference.training.average``, as ``moodring interpolate`` exports it) is scored on
FER2013 PublicTest and on taiwanese_dev through the full pipeline (MTCNN once per photo, largest
face, the served FER framing), with the number of photos called neutral. TUNED is an exported
model directory or one kept epoch (``RUN/epochs/epoch-N.pt``). taiwanese_dev is a dev set: an
alpha picked on it is optimistic by that choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inference.serve.checkpoint import load_model
from inference.serve.faces import build_detector
from inference.serve.precision import resolve_bf16
from inference.training.average import average_states, load_state
from inference.training.data import load_faces
from inference.training.photos import photo_crops
from inference.training.predict import predict_probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("tuned", type=Path)
    ap.add_argument("--base", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--fer", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--photos", type=Path, default=Path("../shared/datasets/taiwanese_dev"))
    views = ["none", "flip", "ten"]
    ap.add_argument("--fer-tta", nargs="+", default=["none"], choices=views, help="views on PublicTest")
    ap.add_argument("--photo-tta", nargs="+", default=["none", "ten"], choices=views, help="views on photos")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, manifest = load_model(args.base)
    classes = tuple(str(c) for c in manifest.classes)
    neutral = classes.index("neutral")
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    tuned_state = load_state(args.tuned, manifest)
    bf16 = resolve_bf16(None)

    fer = load_faces(args.fer, manifest.input_size, classes)
    fer_labels = fer.labels.numpy()
    photos = photo_crops(args.photos, classes, build_detector("mtcnn"), manifest.input_size)
    crops, photo_labels = photos.crops, photos.labels[photos.has_face]
    print(
        f"base {args.base or 'shipped model'}, tuned {args.tuned}; {fer.labels.shape[0]} FER2013 faces "
        f"({args.fer}), {photos.stats.images} photos, a face in {len(crops)} ({args.photos}); bf16 {bf16}"
    )
    head = " | ".join([f"FER {t}" for t in args.fer_tta] + [f"photos {t}" for t in args.photo_tta])
    print(f"\n| alpha | {head} | photos called neutral ({args.photo_tta[0]}) |")
    print("|---" * (len(args.fer_tta) + len(args.photo_tta) + 2) + "|")
    for alpha in args.alphas:
        model.load_state_dict(average_states([base_state, tuned_state], [1.0 - alpha, alpha]))
        cells = []
        called_neutral = 0
        for tta in args.fer_tta:
            fer_probs = predict_probs(model, fer.images, manifest, tta=tta, bf16=bf16)
            cells.append(f"{(fer_probs.argmax(1) == fer_labels).mean():.2%}")
        for i, tta in enumerate(args.photo_tta):
            photo_probs = predict_probs(model, crops, manifest, tta=tta, bf16=bf16)
            cells.append(f"{(photo_probs.argmax(1) == photo_labels).mean():.2%}")
            if i == 0:
                called_neutral = int((photo_probs.argmax(1) == neutral).sum())
        print(f"| {alpha:g} | " + " | ".join(cells) + f" | {called_neutral} |", flush=True)


if __name__ == "__main__":
    main()
