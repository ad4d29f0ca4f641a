"""Per-stage latency of the predictor (decode, detect, classify+CAM, render) on selfie-sized JPEGs.

python benchmarks/analyze_latency.py [--threads 2] [--runs 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch

from benchmarks._photos import selfie_jpeg
from inference.serve.precision import cpu_has_native_bf16
from inference.serve.predictor import Predictor

STAGES = ("decode", "detect", "classify_cam", "render", "total")


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (platform.processor() is often empty)."""
    try:
        with Path("/proc/cpuinfo").open() as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument(
        "--precision",
        choices=("auto", "int8", "bf16", "fp32"),
        default="auto",
        help="auto (the default, as served): the int8 trunk where it met its accuracy rule, else bf16 "
        "where the CPU has bf16 in hardware, else fp32",
    )
    ap.add_argument(
        "--float-tail",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="with --precision int8: layer4 and the head in bf16 or fp32 (auto: bf16 where the CPU has it); "
        "fp32 is what a CPU without bf16 gets, e.g. measured with ONEDNN_MAX_CPU_ISA=AVX2",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tail = {"auto": None, "bf16": True, "fp32": False}[args.float_tail]
    predictor = Predictor.load(detector=args.detector, precision=args.precision, bf16=tail)
    predictor.warm_up()
    print(
        f"machine: {cpu_name()}, torch threads={args.threads}, detector={args.detector}, "
        f"precision={predictor.precision} (CPU bf16 in hardware: {cpu_has_native_bf16()}), runs={args.runs}"
    )
    print(f"{'image':18} {'stage':13} {'p50 ms':>8} {'p95 ms':>8}")
    for label, (w, h) in (("12 MP 4000x3000", (4000, 3000)), ("1 MP 1152x864", (1152, 864))):
        data = selfie_jpeg(w, h)
        for _ in range(3):
            predictor.analyze(data)
        runs = [predictor.analyze(data).timings_ms for _ in range(args.runs)]
        for stage in STAGES:
            vals = [r[stage] for r in runs]
            print(f"{label:18} {stage:13} {statistics.median(vals):8.1f} {pct(vals, 0.95):8.1f}")
        print(f"{'':18} ({len(data) / 1e6:.1f} MB JPEG)")
    predictor.close()


if __name__ == "__main__":
    main()
