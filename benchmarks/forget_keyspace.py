"""/mood forget with millions of unrelated keys in Redis: it deletes by name, no keyspace scan.

python -m benchmarks.forget_keyspace [--keys 3000000] [--runs 5]

Starts a private redis-server (debug commands on, to fill it fast with ``DEBUG POPULATE``),
gives one user a full footprint (consent, 50 readings, corrections, a calm face, recent tracks,
a listening session with another member), then times what the bot does on "Delete everything":
leave the user's sessions (``Sessions.leave``) and ``UserStore.forget``. For comparison it also
times the old way, a ``SCAN`` for the user's hash tag. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.sessions import Sessions
from bot.store import BotHistory, UserStore, user_prefix
from inference.api.contract import hash_user
from recommender.catalogs import load_offline_catalog
from recommender.mood import load_mood_map
from recommender.service import Recommender
from tests.conftest import _free_port

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
USER, OTHER, CHANNEL = 4242, 5151, 777


async def _footprint(store: UserStore, sessions: Sessions) -> None:
    await store.set_consent(USER, True)
    probs = dict.fromkeys(CLASSES, 1 / 7)
    for i in range(50):
        entry = await store.record(USER, "happy", probs, at=time.time() - 3600 + i)
    await store.correct(USER, entry, "sad")
    await store.add_baseline(USER, probs)
    await BotHistory(store).add(hash_user(USER), ["t1", "t2", "t3"])
    if not await sessions.exists(CHANNEL):
        await sessions.start(CHANNEL, USER, "lift", 5)
        await sessions.join(CHANNEL, OTHER)
    else:
        await sessions.join(CHANNEL, USER)


async def main(keys: int, runs: int) -> None:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port = _free_port()
    workdir = tempfile.mkdtemp()
    args = ["--port", str(port), "--save", "", "--appendonly", "no", "--enable-debug-command", "yes"]
    server = subprocess.Popen([binary, *args, "--dir", workdir], stdout=subprocess.DEVNULL)
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        for _ in range(100):
            try:
                await redis.ping()
                break
            except RedisConnectionError:
                await asyncio.sleep(0.05)
        t = time.perf_counter()
        await redis.execute_command("DEBUG", "POPULATE", keys, "unrelated")  # type: ignore[no-untyped-call]
        print(f"filled {await redis.dbsize():,} keys in {time.perf_counter() - t:.1f} s")
        store = UserStore(redis, CLASSES)
        recommender = Recommender(load_mood_map(), [load_offline_catalog()], BotHistory(store))
        sessions = Sessions(redis, recommender)
        rows = []
        for _ in range(runs):
            await _footprint(store, sessions)
            pattern = f"{user_prefix(hash_user(USER))}:*".replace("{", "\\{").replace("}", "\\}")
            t = time.perf_counter()
            found = [k async for k in redis.scan_iter(match=pattern, count=500)]
            scan_s = time.perf_counter() - t
            t = time.perf_counter()
            for channel in await sessions.sessions_of(USER):
                await sessions.leave(CHANNEL if channel == CHANNEL else channel, USER)
            deleted = await store.forget(USER)
            forget_s = time.perf_counter() - t
            left = [k async for k in redis.scan_iter(match=pattern, count=5000)]
            assert not left and not await sessions.is_member(CHANNEL, USER)
            rows.append((len(found), deleted, scan_s, forget_s))
        print(f"\nmachine: {keys:,} unrelated keys; user footprint {rows[0][0]} keys + a session")
        print("| run | old: SCAN for the user's keys | new: leave sessions + DEL by name | keys deleted |")
        print("|---|---|---|---|")
        for i, (_, deleted, scan_s, forget_s) in enumerate(rows, 1):
            print(f"| {i} | {scan_s * 1000:.0f} ms | {forget_s * 1000:.1f} ms | {deleted} |")
    finally:
        await redis.aclose()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=3_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main(args.keys, args.runs))
