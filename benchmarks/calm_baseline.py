"""The calm-face baseline on real photos: accuracy with and without it, per class, over alpha.

python -m benchmarks.calm_baseline [--data ../shared/datasets/taiwanese_dev] [--tta none ten]
    [--alphas 0 0.25 0.5 0.75 1 1.25 1.5 2] [--json out.json]

Runs the full photo pipeline once per TTA setting (MTCNN → FER crop → the committed model), then
for each alpha reads every performer's photos relative to their first neutral photo, exactly as
``moodring evaluate --detect --baseline-by performer`` and the worker do
(``inference.serve.personal``). The calm photos are left out of every score, with and without
the baseline, so both columns count the same photos. "agreed": photos whose observers agree with
the posed label, plus the neutral ones (labels.csv ``agrees_with_label``). alpha is chosen on
this same set (a dev set): the figure for the chosen alpha is optimistic by that choice.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from inference.serve.checkpoint import load_model
from inference.serve.faces import build_detector
from inference.serve.personal import personal_weights, reweight
from inference.serve.precision import resolve_bf16
from inference.training.metrics import classification_report
from inference.training.photos import PhotoProbs, apply_calm_baselines, photo_probs, read_groups


def _agreed(root: Path) -> set[str]:
    with (root / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return {
            r["path"]
            for r in csv.DictReader(fh)
            if r["agrees_with_label"] == "True" or r["label"] == "neutral"
        }


def with_corrections(
    photos: PhotoProbs, groups: dict[str, str], classes: tuple[str, ...], alpha: float, k: int, seed: int = 0
) -> dict[str, float]:
    """Accuracy with no personal data, the correction prior, the calm face, and both.

    Each performer is a user who, besides their calm photo, corrected ``k`` readings (random, fixed
    seed) with their true label; the prior is ``bot.store.UserStore.prior``'s formula. All four
    methods are scored on the same photos: each performer's others.
    """
    rng = np.random.default_rng(seed)
    neutral = classes.index("neutral")
    by_group: dict[str, list[int]] = {}
    for i, path in enumerate(photos.paths):
        by_group.setdefault(groups[path], []).append(i)
    hits = {"none": 0, "corrections": 0, "calm face": 0, "both": 0}
    scored = 0
    for members in by_group.values():
        members = sorted(members, key=lambda i: photos.paths[i])
        calm = next(i for i in members if photos.labels[i] == neutral and photos.has_face[i])
        rest = [i for i in members if i != calm]
        picked = set(rng.choice(len(rest), size=min(k, len(rest)), replace=False).tolist())
        told = [rest[j] for j in picked]
        counts = {c: 0 for c in classes}
        for i in told:
            if photos.probs[i].argmax() != photos.labels[i]:  # the select is used on wrong readings
                counts[classes[photos.labels[i]]] += 1
        mean = sum(counts.values()) / len(classes)
        prior = {c: (1 + n) / (1 + mean) for c, n in counts.items()} if any(counts.values()) else {}
        base = dict(zip(classes, photos.probs[calm].tolist(), strict=True))
        for i in (rest[j] for j in range(len(rest)) if j not in picked):
            scored += 1
            for name, (pr, bl) in {
                "none": (None, None),
                "corrections": (prior, None),
                "calm face": (None, base),
                "both": (prior, base),
            }.items():
                w = personal_weights(classes, pr, bl, alpha)
                p = photos.probs[i] if w is None else reweight(photos.probs[i], w)
                hits[name] += int(p.argmax() == photos.labels[i])
    return {name: h / scored for name, h in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/taiwanese_dev"))
    ap.add_argument("--column", default="performer")
    ap.add_argument("--tta", nargs="+", default=["none", "ten"], choices=["none", "flip", "ten"])
    ap.add_argument("--alphas", nargs="+", type=float, default=[0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--corrections", type=int, default=5, help="readings each performer corrects")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, manifest = load_model()
    classes = tuple(manifest.classes)
    detector = build_detector("mtcnn")
    groups = read_groups(args.data, args.column)
    agreed = _agreed(args.data)
    neutral = classes.index("neutral")
    out: dict[str, object] = {"data": str(args.data), "weights_sha256": manifest.weights_sha256, "runs": []}
    for tta in args.tta:
        photos = photo_probs(model, manifest, args.data, detector, tta=tta, bf16=resolve_bf16(None))
        print(f"\n## tta={tta}: faces found {photos.stats.with_face}/{photos.stats.images}")
        print("| alpha | photos | accuracy | agreed (n) | macro-F1 | neutral precision | called neutral |")
        print("|---|---|---|---|---|---|---|")
        base_recall = None
        for alpha in args.alphas:
            probs, keep, stats = apply_calm_baselines(photos, groups, classes, alpha, args.column)
            rep = classification_report(probs[keep], photos.labels[keep], classes)
            mask = keep & np.array([p in agreed for p in photos.paths])
            agreed_acc = float((probs[mask].argmax(1) == photos.labels[mask]).mean())
            preds = probs[keep].argmax(1)
            called = preds == neutral
            prec = float((photos.labels[keep][called] == neutral).mean()) if called.any() else 0.0
            recall = {c.name: c.recall for c in rep.per_class}
            base_recall = base_recall or recall
            worst = min((recall[k] - base_recall[k], k) for k in recall)
            print(
                f"| {alpha:g} | {rep.n} | {rep.accuracy:.1%} | {agreed_acc:.1%} ({int(mask.sum())}) | "
                f"{rep.macro_f1:.3f} | {prec:.2f} | {called.mean():.0%} |"
            )
            out["runs"].append(  # type: ignore[attr-defined]
                {
                    "tta": tta,
                    "alpha": alpha,
                    "photos": rep.n,
                    "groups_with_baseline": stats.with_baseline,
                    "accuracy": rep.accuracy,
                    "agreed_accuracy": agreed_acc,
                    "agreed_photos": int(mask.sum()),
                    "macro_f1": rep.macro_f1,
                    "neutral_precision": prec,
                    "called_neutral": float(called.mean()),
                    "recall": recall,
                    "worst_recall_change": {"class": worst[1], "points": round(100 * worst[0], 1)},
                }
            )
        print("\nper-class recall (alpha 0 → each alpha):")
        for run in out["runs"]:  # type: ignore[attr-defined]
            if run["tta"] == tta:
                cells = ", ".join(f"{k} {v:.0%}" for k, v in run["recall"].items())
                print(f"  alpha {run['alpha']:g}: {cells}")
        combined = with_corrections(photos, groups, classes, manifest.baseline_alpha, args.corrections)
        print(
            f"\ncorrections and calm face together (alpha {manifest.baseline_alpha:g}, each performer "
            f"corrects {args.corrections} random readings of theirs, scored on the rest):"
        )
        print("| method | accuracy |\n|---|---|")
        for name, acc in combined.items():
            print(f"| {name} | {acc:.1%} |")
        out.setdefault("combined", {})[tta] = combined  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
