"""End-to-end throughput of the queue: submitters → Redis Streams → N workers → results.

Starts a private redis-server and real `moodring worker` processes (shipped model, MTCNN),
then, for each worker count and concurrency, keeps C submitters busy with 1 MP selfies
(heatmap on) for a fixed number of jobs. Prints selfies/s, p50/p99 latency and the
batch-size histogram as a Markdown table.

    python benchmarks/worker_throughput.py [--workers 1 2] [--concurrency 1 4 16] [--jobs 48]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._photos import selfie_jpeg
from inference.api.client import JobClient
from inference.api.settings import QueueSettings
from inference.api.transport import WORKERS_KEY

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def run_level(
    client: JobClient, photo: bytes, concurrency: int, jobs: int
) -> tuple[float, list[float], collections.Counter[int]]:
    latencies: list[float] = []
    batches: collections.Counter[int] = collections.Counter()
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

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter(u) for u in range(concurrency)))
    return jobs / (time.perf_counter() - t0), latencies, batches


async def main_async(args: argparse.Namespace) -> None:
    port = free_port()
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    await asyncio.sleep(0.5)
    redis = Redis.from_url(url)
    photo = selfie_jpeg(1152, 864)
    settings = QueueSettings(redis_url=url, max_backlog=10_000, job_timeout_s=120)
    client = JobClient(redis, settings)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores; photo 1 MP JPEG ({len(photo) // 1024} KB); "
        f"{args.jobs} jobs per row"
    )
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
            )
            procs = [
                subprocess.Popen([sys.executable, "-m", "inference.worker"], env=env, cwd=ROOT)
                for _ in range(n)
            ]
            try:
                await redis.flushdb()
                await wait_workers(redis, n)
                await run_level(client, photo, 2, 4)  # warm-up
                for c in args.concurrency:
                    rate, lat, batches = await run_level(client, photo, c, args.jobs)
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
    finally:
        await redis.aclose()
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--jobs", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
