"""The per-user "one photo at a time" lock: held while its job runs, never by a job that is
settled or that nobody waits for (a lock restored from the AOF after a Redis crash)."""

from __future__ import annotations

from redis.asyncio import Redis

from inference.api.contract import inflight_key
from inference.api.settings import QueueSettings
from inference.api.transport import done_key, open_transport, waiting_key


async def _queue(redis: Redis, redis_server: str):  # type: ignore[no-untyped-def]
    return open_transport(redis, QueueSettings(redis_url=redis_server))


async def test_a_lock_whose_job_is_still_waited_for_blocks(redis: Redis, redis_server: str) -> None:
    q = await _queue(redis, redis_server)
    assert await q.lock_user("u1", "job-a", 25)
    await redis.set(waiting_key("job-a"), "1", ex=25)
    await redis.expire(inflight_key("u1"), 20)  # held for 5 s already
    assert not await q.lock_user("u1", "job-b", 25)
    assert await redis.get(inflight_key("u1")) == b"job-a"


async def test_a_fresh_lock_blocks_while_its_submit_is_on_the_way(redis: Redis, redis_server: str) -> None:
    q = await _queue(redis, redis_server)
    assert await q.lock_user("u2", "job-a", 25)  # no waiting mark yet: the submit is a few ms away
    assert not await q.lock_user("u2", "job-b", 25)


async def test_a_lock_whose_job_was_answered_is_taken_over(redis: Redis, redis_server: str) -> None:
    q = await _queue(redis, redis_server)
    assert await q.lock_user("u3", "job-a", 25)
    await redis.set(waiting_key("job-a"), "1", ex=25)
    await redis.set(done_key("job-a"), "1", ex=60)  # the worker settled it
    assert await q.lock_user("u3", "job-b", 25)
    assert await redis.get(inflight_key("u3")) == b"job-b"
    assert 20 < await redis.ttl(inflight_key("u3")) <= 25


async def test_a_lock_nobody_waits_for_is_taken_over_after_the_grace(redis: Redis, redis_server: str) -> None:
    q = await _queue(redis, redis_server)
    assert await q.lock_user("u4", "job-a", 25)
    await redis.expire(inflight_key("u4"), 22)  # 3 s old, and no waiting mark: its caller is gone
    assert await q.lock_user("u4", "job-b", 25)
    assert await redis.get(inflight_key("u4")) == b"job-b"
