"""End-to-end throughput of the queue: submitters → Redis Streams → N workers → results.

Starts a private redis-server and real `moodring worker` processes (shipped model, MTCNN),
then, for each worker count and concurrency, keeps C submitters busy with 1 MP selfies
(heatmap on) for a fixed number of jobs. Prints selfies/s, p50/p99 latency and the
batch-size histogram as a Markdown table, then where the time of a job went, stage by stage
(the worker's own timings: decode, detect, classify + Grad-CAM of its batch, render; the rest
of the end-to-end latency is waiting in the queue plus Redis and the submit side).

    python benchmarks/worker_throughput.py [--workers 1 2] [--concurrency 1 4 16] [--jobs 48]
        [--cluster] [--shards N] [--device auto|cpu|cuda] [--prepare-threads N]

``--cluster`` runs the queue on a 3-master Redis Cluster (started here with ``redis-cli
--cluster create``) with the jobs sharded over ``--shards`` streams (default 3), instead of
one redis-server. ``--device cuda`` runs the workers' network on the GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._photos import selfie_jpeg
from inference.api.client import JobClient
from inference.api.connect import connect
from inference.api.settings import QueueSettings
from inference.api.transport import WORKERS_KEY
from tests.conftest import spawn_cluster, spawn_redis

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def wait_workers(redis: Redis, n: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if await redis.zcard(WORKERS_KEY) >= n:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("workers did not start")


STAGES = ("decode", "detect", "classify_cam", "render")


def start_servers(cluster: bool, tmp: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    """One redis-server, or three cluster masters joined by redis-cli (the tests' own starters)."""
    if cluster:
        nodes = spawn_cluster(Path(tmp))
        return nodes.procs, nodes.url
    server, url = spawn_redis("--save", "", "--appendonly", "no", workdir=tmp)
    return [server], url


async def run_level(
    client: JobClient, photo: bytes, concurrency: int, jobs: int
) -> tuple[float, list[float], collections.Counter[int], dict[str, float]]:
    latencies: list[float] = []
    batches: collections.Counter[int] = collections.Counter()
    stages: dict[str, float] = collections.defaultdict(float)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(jobs):
        queue.put_nowait(i)

    async def submitter(user: int) -> None:
        while not queue.empty():
            queue.get_nowait()
            t = time.perf_counter()
            res = await client.analyze(f"bench-{user}", photo, timeout_s=120)
            latencies.append(time.perf_counter() - t)
            batches[res.batch_size] += 1
            for name in STAGES:
                stages[name] += res.timings_ms.get(name, 0.0)
            stages["queue_redis"] += latencies[-1] * 1000 - sum(res.timings_ms.get(n, 0.0) for n in STAGES)

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter(u) for u in range(concurrency)))
    mean = {k: v / jobs for k, v in stages.items()}
    return jobs / (time.perf_counter() - t0), latencies, batches, mean


async def main_async(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp()
    servers, url = start_servers(args.cluster, tmp)
    shards = args.shards or (3 if args.cluster else 1)
    redis = connect(url, args.cluster)
    photo = selfie_jpeg(1152, 864)
    settings = QueueSettings(
        redis_url=url, max_backlog=10_000, job_timeout_s=120, redis_cluster=args.cluster, queue_shards=shards
    )
    client = JobClient(redis, settings)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores; photo 1 MP JPEG ({len(photo) // 1024} KB); "
        f"{args.jobs} jobs per row; Redis: {'3-master cluster' if args.cluster else 'one server'}, "
        f"{shards} stream shard(s); device {args.device}"
    )
    split: list[str] = []
    print(
        "| workers | threads/worker | concurrency | selfies/s | p50 s | p99 s | batch sizes (jobs: count) |"
    )
    print("|---|---|---|---|---|---|---|")
    try:
        for n in args.workers:
            threads = max(1, (os.cpu_count() or 2) // n)
            env = dict(
                os.environ,
                PYTHONPATH=str(ROOT),
                MOODRING_REDIS_URL=url,
                MOODRING_TORCH_THREADS=str(threads),
                MOODRING_LOG_LEVEL="WARNING",
                MOODRING_BATCH_SIZE=str(args.batch),
                MOODRING_REDIS_CLUSTER="true" if args.cluster else "false",
                MOODRING_QUEUE_SHARDS=str(shards),
                MOODRING_DEVICE=args.device,
            )
            if args.prepare_threads:
                env["MOODRING_PREPARE_THREADS"] = str(args.prepare_threads)
            procs = [
                subprocess.Popen([sys.executable, "-m", "inference.worker"], env=env, cwd=ROOT)
                for _ in range(n)
            ]
            try:
                await redis.flushdb()
                await wait_workers(redis, n)
                await run_level(client, photo, 2, 4)  # warm-up
                for c in args.concurrency:
                    rate, lat, batches, stage = await run_level(client, photo, c, args.jobs)
                    split.append(
                        f"| {n} | {c} | "
                        + " | ".join(f"{stage.get(k, 0.0):.1f}" for k in (*STAGES, "queue_redis"))
                        + " |"
                    )
                    hist = ", ".join(f"{k}: {v}" for k, v in sorted(batches.items()))
                    print(
                        f"| {n} | {threads} | {c} | {rate:.1f} | {pct(lat, 0.5):.2f} | "
                        f"{pct(lat, 0.99):.2f} | {hist} |",
                        flush=True,
                    )
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    p.wait(timeout=60)
        print("\nmean ms per job, stage by stage (classify + Grad-CAM is per batch, shared by its jobs):\n")
        print("| workers | concurrency | decode | detect | classify + CAM | render | queue wait + Redis |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(split))
    finally:
        await redis.aclose()
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--jobs", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cluster", action="store_true", help="a 3-master Redis Cluster instead of one server")
    ap.add_argument("--shards", type=int, default=0, help="job stream shards (default: 3 on a cluster)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--prepare-threads", type=int, default=0, help="default: the worker's (1 on CPU)")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
