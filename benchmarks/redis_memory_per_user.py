"""Redis memory per user, for sizing (docs/scaling.md): what the bot stores for a typical and
for a heavy user, measured on a private redis-server through the bot's own UserStore.

python -m benchmarks.redis_memory_per_user [--users 2000]

Per user: consent, N readings (30: a month of one check a day; 1000: the history cap), one
correction (and its prior), a calm face and 10 recently recommended tracks. Prints
``used_memory`` growth per user. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

from redis.asyncio import Redis

from bot.store import BotHistory, UserStore
from inference.api.contract import hash_user
from tests.conftest import spawn_redis

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


async def _user(store: UserStore, history: BotHistory, user: int, readings: int) -> None:
    await store.set_consent(user, True)
    probs = {c: round(0.05 + 0.1 * i, 4) for i, c in enumerate(CLASSES)}
    entry = ""
    now = time.time()
    for i in range(readings):
        entry = await store.record(user, "happy", probs, at=now - 86_400 * 30 + i * 60)
    await store.correct(user, entry, "sad")
    await store.add_baseline(user, probs)
    await history.add(hash_user(user, store.salt), [f"spotify:track:{user:010d}{k:012d}" for k in range(10)])


async def main(users: int) -> None:
    workdir = tempfile.mkdtemp()
    server, url = spawn_redis("--save", "", "--appendonly", "no", workdir=workdir)  # waits until it listens
    redis = Redis.from_url(url)
    try:
        store = UserStore(redis, CLASSES)
        history = BotHistory(store)
        print(f"redis-server {(await redis.info('server'))['redis_version']}, {users} users per row\n")
        print("| readings per user | bytes per user | GB per million users |")
        print("|---|---|---|")
        for readings, n in ((30, users), (1000, max(1, users // 20))):
            await redis.flushdb()
            before = int((await redis.info("memory"))["used_memory"])
            for u in range(n):
                await _user(store, history, 10_000_000 + u, readings)
            per = (int((await redis.info("memory"))["used_memory"]) - before) / n
            print(f"| {readings} | {per:,.0f} | {per / 1000:,.1f} |")
    finally:
        await redis.aclose()
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=2000)
    asyncio.run(main(ap.parse_args().users))
