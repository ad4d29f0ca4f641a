"""Is the Grad-CAM map faithful? Deletion curve vs a random-map baseline on FER2013 val.

For each face, pixels are deleted (set to the dataset mean) in the order the map ranks
them, 0 %..60 % of the face, and the probability of the originally predicted class is
measured. A faithful map makes that probability fall faster than a random map of the
same native resolution (6x6 upsampled exactly like Grad-CAM's). Lower area under the
deletion curve (AUC) is better.

It also counts empty maps (no positive evidence anywhere in the face; Grad-CAM's ReLU
leaves all zeros) per predicted class. Their deletion order is meaningless, so the AUC is
printed for all faces and for the faces with a non-empty map. ``--target`` swaps the
scalar Grad-CAM explains, to compare with the served default (the predicted class's raw
score, ``logit``): ``softmax`` (its probability; same map as log-probability up to a
positive factor) or ``contrast`` (its score minus the runner-up's).

    python -m benchmarks.cam_faithfulness [--n 600] [--threads 2] [--target logit]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.serve.checkpoint import load_model
from inference.serve.explain import CamClassifier, map_is_empty
from inference.serve.precision import resolve_bf16
from inference.serve.preprocess import faces_to_batch
from inference.training.data import FER2013_CLASSES as EMOTIONS
from inference.training.data import load_faces

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def _softmax(z: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, -1)[z.argmax()]


def _contrast(z: torch.Tensor) -> torch.Tensor:
    top = z.topk(2).indices
    return z[top[0]] - z[top[1]]


TARGETS = {"logit": None, "softmax": _softmax, "contrast": _contrast}


@torch.inference_mode()
def deletion_curve(
    model: torch.nn.Module, x: torch.Tensor, cls: np.ndarray, maps: np.ndarray, bf16: bool
) -> np.ndarray:
    """Probability of ``cls`` after deleting each fraction of the highest-ranked pixels: (N, F)."""
    n, _, h, w = x.shape
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    out = np.zeros((n, len(FRACTIONS)), dtype=np.float32)
    for j, frac in enumerate(FRACTIONS):
        k = round(frac * h * w)
        mask = np.ones((n, h * w), dtype=np.float32)
        if k:
            np.put_along_axis(mask, order[:, :k], 0.0, axis=1)
        xm = x * torch.from_numpy(mask).view(n, 1, h, w)  # 0 == dataset mean after normalisation
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            p = torch.softmax(model(xm.contiguous(memory_format=torch.channels_last)).float(), 1)
        out[:, j] = p[torch.arange(n), torch.from_numpy(cls)].numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--val", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--target", choices=sorted(TARGETS), default="logit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, manifest = load_model(args.model_dir)
    data = load_faces(args.val, manifest.input_size)
    idx = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(0))[: args.n]
    faces = data.images[idx]
    rng = np.random.default_rng(0)
    cam_curves, rand_curves, empty, predicted = [], [], [], []
    bf16 = resolve_bf16(None)  # as served: bf16 only where the CPU has it in hardware
    cam = CamClassifier(model, manifest.target_layer, bf16=bf16, target=TARGETS[args.target])
    for start in range(0, len(faces), 64):
        x = faces_to_batch(faces[start : start + 64], manifest.input_size, manifest.mean, manifest.std)
        out = cam(x)
        cls = out.probs.argmax(1)
        predicted.append(cls)
        empty.append(np.array([map_is_empty(m) for m in out.maps]))
        nh, nw = out.native_size
        rand = torch.from_numpy(rng.random((len(x), 1, nh, nw), dtype=np.float32))
        rand_maps = F.interpolate(rand, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].numpy()
        cam_curves.append(deletion_curve(model, x, cls, out.maps, bf16))
        rand_curves.append(deletion_curve(model, x, cls, rand_maps, bf16))
    cam.close()
    c, r = np.concatenate(cam_curves), np.concatenate(rand_curves)
    e, p = np.concatenate(empty), np.concatenate(predicted)
    print(
        f"{len(c)} FER2013 val faces, target layer {manifest.target_layer}, native map {nh}x{nw}, "
        f"Grad-CAM target {args.target}"
    )
    print("deleted   " + " ".join(f"{f:>6.0%}" for f in FRACTIONS))
    print("grad-cam  " + " ".join(f"{v:6.3f}" for v in c.mean(0)))
    print("random    " + " ".join(f"{v:6.3f}" for v in r.mean(0)))
    auc_c, auc_r = np.trapezoid(c.mean(0), FRACTIONS), np.trapezoid(r.mean(0), FRACTIONS)
    wins = float((np.trapezoid(c, FRACTIONS, axis=1) < np.trapezoid(r, FRACTIONS, axis=1)).mean())
    print(
        f"deletion AUC: grad-cam {auc_c:.4f}  random {auc_r:.4f}  (lower is better); "
        f"grad-cam lower on {wins:.0%} of faces"
    )
    per_class = ", ".join(
        f"{name} {e[p == i].mean():.0%} of {(p == i).sum()}"
        for i, name in enumerate(EMOTIONS)
        if (p == i).any()
    )
    print(f"empty maps: {e.sum()} of {len(e)} ({e.mean():.1%}); by predicted class: {per_class}")
    if e.any() and not e.all():
        auc_ne = np.trapezoid(c[~e].mean(0), FRACTIONS)
        auc_rne = np.trapezoid(r[~e].mean(0), FRACTIONS)
        print(
            f"deletion AUC on the {(~e).sum()} faces with a non-empty map: "
            f"grad-cam {auc_ne:.4f}  random {auc_rne:.4f}"
        )


if __name__ == "__main__":
    main()
