"""The community adapter, simulated on real photos with people left out (issue: community calibration).

python -m benchmarks.adapter_sim [--photos ../shared/datasets/taiwanese_dev]
    [--part all|curve|feedback|fer|time] [--draws 5] [--seeds 3]
    [--fer ../shared/datasets/fer2013/val] [--json out.json]

The committed model reads every photo once (MTCNN, largest face, single view, as served), giving
each photo the network's own probabilities and projected features. Performers stand in for users:

* curve: fit on k performers' photos as if every reading were labelled (k = 3, 5, 8: ``--draws``
  random sets per held-out performer; 14: all others), score the held-out performer's photos,
  every performer held out in turn. Accuracy without / with, per class, neutral precision, the
  raters-agree subset, and the calm face on top (each performer's first neutral photo, as
  ``moodring evaluate --baseline-by performer``; that photo left out of the score).
* feedback: 12 performers' photos as readings nobody labelled unless the simulated user does: on
  a random share the bot asks "Did I get it right?" (some answer; a "no" picks the right label
  some of the time), the rest are confirmed when right and corrected when wrong at given rates.
  A naive fit (every label weight 1, nothing else), a plain one (weight 1, with the shipped class
  balance, recall floor and cap) against the shipped fit (inverse collection weights) and the
  shipped method (that fit, activated only if the guard, validated leaving people out on the
  random asks, says so; ``min_people`` lowered to 10 since there are 12). The 15 performers are
  held out 3 at a time (5 folds), every fold's 3 scored by a fit on the other 12.
* fer: an adapter fitted on all 15 performers, applied to FER2013 PublicTest: what it costs there.
* time: one full fit (weights, fit, recall floor, the guard's people-out validation) on 100,000
  synthetic labelled readings of 2,000 people, drawn from the photos' readings.

Nothing fitted here is written or shipped (the dev set's terms: internal evaluation only).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.serve.adapter import Adapter
from inference.serve.checkpoint import load_model
from inference.serve.faces import build_detector
from inference.serve.model import fold_batchnorm
from inference.serve.personal import personal_weights, reweight
from inference.serve.precision import resolve_bf16
from inference.serve.projection import load_projection
from inference.training.adapt import (
    Feedback,
    Policy,
    balance_classes,
    cap_people,
    feedback_weights,
    fit,
)
from inference.training.adapt_judge import decide, fit_and_judge, validate
from inference.training.data import load_faces
from inference.training.photos import read_groups
from inference.training.readings import photo_readings, predict_with_features

SCENARIOS: dict[str, dict[str, float]] = {
    # ask: share of readings asked; answer: share of asks answered; pick: share of "no"s that pick
    # the right label; confirm / correct: share of right / wrong unasked readings users label
    "every reading labelled": {"ask": 1.0, "answer": 1.0, "pick": 1.0, "confirm": 0.0, "correct": 0.0},
    "balanced 20/20 + asks": {"ask": 0.2, "answer": 0.6, "pick": 0.7, "confirm": 0.2, "correct": 0.2},
    "confirm 10 / correct 50 + asks": {
        "ask": 0.2,
        "answer": 0.6,
        "pick": 0.7,
        "confirm": 0.1,
        "correct": 0.5,
    },
    "corrections only + asks": {"ask": 0.2, "answer": 0.6, "pick": 0.7, "confirm": 0.0, "correct": 0.5},
    "confirm 10 / correct 50, no asks": {
        "ask": 0.0,
        "answer": 0.0,
        "pick": 0.0,
        "confirm": 0.1,
        "correct": 0.5,
    },
    "corrections only, no asks": {"ask": 0.0, "answer": 0.0, "pick": 0.0, "confirm": 0.0, "correct": 0.5},
}


def given(probs: np.ndarray, feats: np.ndarray, labels: np.ndarray, people: np.ndarray) -> Feedback:
    return Feedback(probs, feats, labels, people, np.array(["given"] * len(labels), dtype=object))


def simulate(
    probs: np.ndarray,
    feats: np.ndarray,
    labels: np.ndarray,
    people: np.ndarray,
    s: dict[str, float],
    rng: np.random.Generator,
) -> Feedback:
    """What users would have labelled of these readings (served without an adapter)."""
    served = probs.argmax(axis=1)
    right = served == labels
    rows, kinds, ys = [], [], []
    shown: dict[str, int] = {}
    asked: dict[str, int] = {}
    for i in range(len(labels)):
        p = str(people[i])
        shown[p] = shown.get(p, 0) + 1
        if rng.random() < s["ask"]:
            asked[p] = asked.get(p, 0) + 1
            if rng.random() < s["answer"]:
                rows.append(i)
                kinds.append("yes" if right[i] else "no")
                ys.append(labels[i] if right[i] or rng.random() < s["pick"] else -1)
        elif right[i] and rng.random() < s["confirm"]:
            rows.append(i)
            kinds.append("confirm")
            ys.append(labels[i])
        elif not right[i] and rng.random() < s["correct"]:
            rows.append(i)
            kinds.append("correct")
            ys.append(labels[i])
    r = np.array(rows, dtype=int)
    return Feedback(
        probs[r],
        feats[r],
        np.array(ys, dtype=np.int64),
        people[r].astype(object),
        np.array(kinds, dtype=object),
        shown,
        asked,
    )


def report(pred: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, object]:
    neutral = classes.index("neutral")
    called = pred == neutral
    return {
        "accuracy": float((pred == labels).mean()),
        "recall": {c: float((pred[labels == i] == i).mean()) for i, c in enumerate(classes)},
        "neutral_precision": float((labels[called] == neutral).mean()) if called.any() else 0.0,
        "called_neutral": int(called.sum()),
    }


def curve(
    data: dict[str, np.ndarray], classes: tuple[str, ...], policy: Policy, draws: int
) -> dict[str, object]:
    probs, feats, labels, people, agree = (data[k] for k in ("probs", "feats", "labels", "people", "agree"))
    names = sorted(set(people.tolist()))
    rng = np.random.default_rng(0)
    base = probs.argmax(axis=1)
    out: dict[str, object] = {"none": report(base, labels, classes)}
    for k in (3, 5, 8, 14):
        accs, last = [], None
        adapters: dict[str, Adapter] = {}
        for _ in range(1 if k == 14 else draws):
            pred = base.copy()
            adapted = probs.copy()
            for held in names:
                others = [n for n in names if n != held]
                chosen = others if k >= len(others) else list(rng.choice(others, k, replace=False))
                tr = np.isin(people, chosen)
                te = people == held
                adapter = fit(given(probs[tr], feats[tr], labels[tr], people[tr]), classes, policy)
                adapters[held] = adapter
                adapted[te] = adapter.apply(probs[te], feats[te])
                pred[te] = adapted[te].argmax(axis=1)
            accs.append(float((pred == labels).mean()))
            last = (pred, adapted)
        assert last is not None
        row: dict[str, object] = {"accuracy_mean": float(np.mean(accs)), "accuracy_draws": accs}
        if k == 14:
            pred, adapted = last
            row |= report(pred, labels, classes)
            row["agree_subset"] = {
                "none": float((base[agree] == labels[agree]).mean()),
                "adapter": float((pred[agree] == labels[agree]).mean()),
                "photos": int(agree.sum()),
            }
            row["calm_face"] = calm_face(probs, adapted, labels, people, data["paths"], classes, adapters)
        out[f"people_{k}"] = row
        draws_text = ", ".join(f"{100 * a:.1f}" for a in accs)
        print(f"  {k:>2} people: {100 * np.mean(accs):.1f} % (draws {draws_text})", flush=True)
    return out


def calm_face(
    probs: np.ndarray,
    adapted: np.ndarray,
    labels: np.ndarray,
    people: np.ndarray,
    paths: np.ndarray,
    classes: tuple[str, ...],
    adapters: dict[str, Adapter],
) -> dict[str, float]:
    """Each performer's first neutral photo as their calm face, with and without the adapter (as
    served: the calm face's own probabilities through the adapter, without features)."""
    neutral = classes.index("neutral")
    alpha = 0.65  # the manifest's baseline_alpha
    keep = np.ones(len(labels), dtype=bool)
    plain, with_adapter = probs.copy(), adapted.copy()
    names = sorted(set(people.tolist()))
    for held in names:
        rows = np.flatnonzero(people == held)
        calm_rows = [i for i in sorted(rows, key=lambda i: paths[i]) if labels[i] == neutral]
        if not calm_rows:
            continue
        c = calm_rows[0]
        keep[c] = False
        adapter = adapters[held]  # fitted without this performer
        calm_raw = dict(zip(classes, probs[c].tolist(), strict=True))
        w_plain = personal_weights(classes, baseline=calm_raw, alpha=alpha)
        w_adapt = personal_weights(classes, baseline=adapter.apply_dict(calm_raw), alpha=alpha)
        assert w_plain is not None and w_adapt is not None
        plain[rows] = reweight(probs[rows], w_plain)
        with_adapter[rows] = reweight(adapted[rows], w_adapt)
    return {
        "none_with_calm": float((plain.argmax(1)[keep] == labels[keep]).mean()),
        "adapter_without_calm": float((adapted.argmax(1)[keep] == labels[keep]).mean()),
        "adapter_with_calm": float((with_adapter.argmax(1)[keep] == labels[keep]).mean()),
        "photos_scored": int(keep.sum()),
    }


def feedback(
    data: dict[str, np.ndarray], classes: tuple[str, ...], policy: Policy, seeds: int
) -> dict[str, object]:
    probs, feats, labels, people = (data[k] for k in ("probs", "feats", "labels", "people"))
    names = sorted(set(people.tolist()))
    base = probs.argmax(axis=1)
    none = float((base == labels).mean())
    guard = replace(policy, min_people=10)
    out: dict[str, object] = {"none": none}
    for name, s in SCENARIOS.items():
        runs = []
        for seed in range(seeds):
            rng = np.random.default_rng(100 + seed)
            pred = {m: base.copy() for m in ("naive", "plain", "weighted", "shipped", "plain_guarded")}
            activated = plain_activated = 0
            labelled = 0
            order = np.random.default_rng(seed).permutation(len(names))
            groups = [[names[j] for j in order[i::5]] for i in range(5)]
            for held in groups:
                te = np.isin(people, held)
                tr = ~te
                fb = simulate(probs[tr], feats[tr], labels[tr], people[tr], s, rng)
                labelled += int((fb.labels >= 0).sum())
                plain_w = np.where(fb.labels >= 0, 1.0, 0.0)
                plain_w = cap_people(
                    balance_classes(plain_w, fb.labels, len(classes), policy.balance), fb.people, policy.cap
                )
                plain = fit(fb, classes, policy, weights=plain_w)
                # naive: every label weight 1, no class balance, no recall floor, no cap
                ones = np.where(fb.labels >= 0, 1.0, 0.0)
                bare = replace(policy, balance=0.0, floor=1.0, cap=1.0)
                pred["naive"][te] = fit(fb, classes, bare, weights=ones).apply(probs[te], feats[te]).argmax(1)
                shipped = fit(fb, classes, policy)
                pred["plain"][te] = plain.apply(probs[te], feats[te]).argmax(1)
                pred["weighted"][te] = shipped.apply(probs[te], feats[te]).argmax(1)
                if decide(validate(fb, classes, guard), guard).activate:
                    activated += 1
                    pred["shipped"][te] = pred["weighted"][te]
                if decide(validate(fb, classes, guard, weights=plain_w), guard).activate:
                    plain_activated += 1
                    pred["plain_guarded"][te] = pred["plain"][te]
            _, rates = feedback_weights(fb, policy)
            run: dict[str, Any] = {m: float((p == labels).mean()) for m, p in pred.items()}
            run |= {
                "activated_folds": activated,
                "plain_activated_folds": plain_activated,
                "labels_per_fit": labelled / len(groups),
            }
            run["rates_last_fold"] = {
                "right_share": rates.right_share,
                "confirm_rate": rates.confirm_rate,
                "correct_rate": rates.correct_rate,
            }
            runs.append(run)
        mean = {
            m: float(np.mean([r[m] for r in runs]))
            for m in ("naive", "plain", "weighted", "shipped", "plain_guarded")
        }
        worst = min(r["shipped"] for r in runs)
        out[name] = {"mean": mean, "worst_shipped": worst, "runs": runs}
        print(
            f"  {name}: none {100 * none:.1f} | naive {100 * mean['naive']:.1f} | "
            f"plain {100 * mean['plain']:.1f} "
            f"(guarded {100 * mean['plain_guarded']:.1f}) | weighted {100 * mean['weighted']:.1f} | "
            f"shipped {100 * mean['shipped']:.1f} (worst {100 * worst:.1f}); "
            f"activated {[r['activated_folds'] for r in runs]} of 5 folds; plain passed the guard "
            f"{[r['plain_activated_folds'] for r in runs]}; ~{runs[0]['labels_per_fit']:.0f} labels per fit",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=Path("../shared/datasets/taiwanese_dev"))
    ap.add_argument("--fer", type=Path, default=Path("../shared/datasets/fer2013/val"))
    ap.add_argument("--part", choices=["all", "curve", "feedback", "fer", "time"], default="all")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--judge", choices=["asks", "weighted"], default="weighted", help="what the guard scores")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, manifest = load_model(None)
    model = fold_batchnorm(model.eval())
    projection = load_projection(None, manifest)
    classes = tuple(str(c) for c in manifest.classes)
    bf16 = resolve_bf16(None)
    policy = replace(Policy(), judge=args.judge)
    results: dict[str, object] = {"policy": policy.__dict__ if hasattr(policy, "__dict__") else str(policy)}
    got = photo_readings(model, manifest, args.photos, build_detector("mtcnn"), projection, bf16=bf16)
    groups = read_groups(args.photos, "performer")
    table = {}
    import csv

    with (args.photos / "labels.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            table[r["path"]] = r
    agree = np.array(
        [table[p]["agrees_with_label"] == "True" or table[p]["label"] == "neutral" for p in got.paths]
    )
    data = {
        "probs": got.probs.astype(np.float64),
        "feats": got.features,
        "labels": got.labels.astype(np.int64),
        "people": np.array([groups[p] for p in got.paths], dtype=object),
        "agree": agree,
        "paths": np.array(got.paths),
    }
    plain_acc = 100 * (got.probs.argmax(1) == got.labels).mean()
    dims = projection.dims if projection else 0
    print(
        f"{got.stats.images} photos, a face in {got.stats.with_face}; projection {dims} dims; "
        f"no adapter: {plain_acc:.1f} %"
    )
    started = time.perf_counter()
    if args.part in ("all", "curve"):
        print("learning curve (every reading labelled, performers left out):")
        results["curve"] = curve(data, classes, policy, args.draws)
    if args.part in ("all", "feedback"):
        print("feedback as users give it (12 people per fit, 3 performers held out at a time):")
        results["feedback"] = feedback(data, classes, policy, args.seeds)
    if args.part in ("all", "fer"):
        adapter = fit(given(data["probs"], data["feats"], data["labels"], data["people"]), classes, policy)
        fer = load_faces(args.fer, manifest.input_size, classes)
        p, f = predict_with_features(model, fer.images, manifest, projection, bf16=bf16)
        y = fer.labels.numpy()
        before = float((p.argmax(1) == y).mean())
        after = float((adapter.apply(p, f).argmax(1) == y).mean())
        results["fer_publictest"] = {"without": before, "with": after, "faces": len(y)}
        print(
            f"FER2013 PublicTest single view: {100 * before:.2f} % without, {100 * after:.2f} % with "
            "an adapter fitted on all 15 performers"
        )
    if args.part in ("all", "time"):
        results["time_100k"] = time_fit(data, classes, policy)
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


def time_fit(data: dict[str, np.ndarray], classes: tuple[str, ...], policy: Policy) -> dict[str, float]:
    rng = np.random.default_rng(7)
    n, people = 100_000, 2_000
    rows = rng.integers(0, len(data["labels"]), n)
    feats = data["feats"][rows] + rng.normal(0, 0.3, (n, data["feats"].shape[1])).astype(np.float32)
    who = np.array([f"u{i}" for i in rng.integers(0, people, n)], dtype=object)
    kinds = rng.choice(np.array(["yes", "no", "confirm", "correct"], dtype=object), n, p=[0.1, 0.1, 0.3, 0.5])
    shown = {f"u{i}": 200 for i in range(people)}
    asked = {f"u{i}": 40 for i in range(people)}
    fb = Feedback(data["probs"][rows], feats, data["labels"][rows], who, kinds, shown, asked)
    t = time.perf_counter()
    _, record = fit_and_judge(
        fb, classes, policy, version="timing", source="synthetic", projection_sha256="synthetic"
    )
    seconds = time.perf_counter() - t
    print(
        f"fit on {n:,} labelled readings of {people:,} people (with the guard's validation): {seconds:.1f} s"
    )
    return {
        "readings": n,
        "people": people,
        "seconds": seconds,
        "validated_gain": record.validation["gain_points"],
    }


if __name__ == "__main__":
    main()
