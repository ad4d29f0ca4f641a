"""Redis memory per user, for sizing (docs/scaling.md): what the bot stores for a typical and
for a heavy user, measured on a private redis-server through the bot's own UserStore.

python -m benchmarks.redis_memory_per_user [--users 2000]

Per user: consent, N readings (30: a month of one check a day; 1000: the history cap), one
correction (and its prior), a calm face and 10 recently recommended tracks. Prints
``used_memory`` growth per user. Asserts nothing.

The last row is a user who helps improve readings (the community adapter) and labels every one
of their 30 readings: each reading then also keeps its 128 projected features (base64 of
float16) and a labelled-reading record; the difference to the first row, per reading, is what
one contribution costs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

from redis.asyncio import Redis

from bot.store import BotHistory, UserStore
from inference.api.community import encode_features
from inference.api.contract import hash_user
from tests.conftest import spawn_redis

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


FEATURES = encode_features([0.123 * (k % 17) - 1 for k in range(128)])


async def _user(
    store: UserStore, history: BotHistory, user: int, readings: int, contributing: bool = False
) -> None:
    await store.set_consent(user, True)
    if contributing:
        await store.set_contributing(user, True)
    probs = {c: round(0.05 + 0.1 * i, 4) for i, c in enumerate(CLASSES)}
    entry = ""
    now = time.time()
    for i in range(readings):
        at = now - 86_400 * 30 + i * 60
        if contributing:
            entry = (await store.record_reading(user, "happy", probs, at, features=FEATURES)).entry_id
            if i < readings - 1:
                await store.label(user, entry, "happy" if i % 3 else "sad")
        else:
            entry = await store.record(user, "happy", probs, at=at)
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
        rows: dict[str, float] = {}
        for readings, n, contributing in (
            (30, users, False),
            (1000, max(1, users // 20), False),
            (30, users, True),
        ):
            await redis.flushdb()
            before = int((await redis.info("memory"))["used_memory"])
            for u in range(n):
                await _user(store, history, 10_000_000 + u, readings, contributing)
            per = (int((await redis.info("memory"))["used_memory"]) - before) / n
            name = f"{readings}, each labelled and contributed" if contributing else str(readings)
            rows[name] = per
            print(f"| {name} | {per:,.0f} | {per / 1000:,.1f} |")
        extra = (rows["30, each labelled and contributed"] - rows["30"]) / 30
        print(f"\none contribution (a labelled reading with its 128 projected features): {extra:,.0f} bytes")
    finally:
        await redis.aclose()
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=2000)
    asyncio.run(main(ap.parse_args().users))
