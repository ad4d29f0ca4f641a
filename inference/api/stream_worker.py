"""The worker side of the job queue: beat, read new entries and claim a dead worker's, fetch each
job's photo, answer each job once, ack and delete, dead-letter what can't be served, prune dead
consumers. Each job of a batch is fetched and settled on its own, so one bad entry never
hurts its batch-mates."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from inference.api.contract import Job, JobResult, image_key, result_key
from inference.api.stream_protocol import (
    DEAD_LETTER_AGE_S,
    TRANSIENT,
    WORKER_MODEL_TTL_S,
    WORKERS_KEY,
    Delivery,
    Fetched,
    StreamBase,
    delivery,
    done_key,
    served,
    waiting_key,
    worker_model_key,
)

log = logging.getLogger(__name__)


class WorkerSide(StreamBase):
    """The calls a worker makes."""

    async def heartbeat(self, consumer: str, model: str = "", precision: str = "") -> None:
        """Beat in the workers' sorted set (consumer → time), with the model and precision served;
        gone for a day: dropped."""
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:  # one key
            pipe.zadd(WORKERS_KEY, {consumer: now})
            pipe.zremrangebyscore(WORKERS_KEY, 0, now - WORKER_MODEL_TTL_S)
            await pipe.execute()
        if model:
            what = f"{model} {precision}".strip()
            await self.redis.set(worker_model_key(consumer), what, ex=WORKER_MODEL_TTL_S)

    async def leave(self, consumer: str) -> None:
        """A worker stopping on purpose takes itself out of the workers' set at once, so a check
        sent after it is told "analysis is down" straight away instead of waiting out the window."""
        await self.redis.zrem(WORKERS_KEY, consumer)
        await self.redis.delete(worker_model_key(consumer))

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """Up to ``count`` new entries from the shards, waiting up to ``block_ms`` when all are empty.

        One shard: one blocking ``XREADGROUP``. Several: a non-blocking pass over the shards
        (starting from a rotating one, so none starves), then, when nothing was there, one
        blocking read: over all shards on one Redis; on a cluster, where one command can't span
        slots, on one rotating shard for a short slice (a job on another shard waits at most that).
        """
        if len(self.streams) == 1:
            return await self._read({self.streams[0]: ">"}, consumer, count, block_ms)
        n = len(self.streams)
        start, self._next = self._next, (self._next + 1) % n
        out: list[Delivery] = []
        for i in range(n):
            got = await self._read({self.streams[(start + i) % n]: ">"}, consumer, count - len(out), None)
            out += got
            if len(out) >= count:
                return out
        if out:
            return out
        if not self.cluster:
            return await self._read(dict.fromkeys(self.streams, ">"), consumer, max(1, count // n), block_ms)
        return await self._read({self.streams[start]: ">"}, consumer, count, min(block_ms, 50))

    async def _read(
        self, streams: dict[Any, Any], consumer: str, count: int, block_ms: int | None
    ) -> list[Delivery]:
        resp: Any  # redis-py's response type is a loose union
        if self.cluster:
            resp = await self._read_on_node(next(iter(streams)), consumer, count, block_ms)
        else:
            resp = await self.redis.xreadgroup(self.s.group, consumer, streams, count=count, block=block_ms)
        out = []
        for stream, entries in resp or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            out += [delivery(eid, fields.get(b"job"), name, 1) for eid, fields in entries if fields]
        return out

    async def _read_on_node(self, stream: str, consumer: str, count: int, block_ms: int | None) -> Any:
        """XREADGROUP on one shard, sent straight to the master that owns its slot.

        redis-py finds XREADGROUP's keys with a ``COMMAND GETKEYS`` round trip to its default
        node; when that node is a master that just died, every read fails until the client is
        rebuilt (seen in the failover test). Routing by the stream's slot skips that lookup (and
        its round trip); a dead owner raises a connection error that refreshes the slot map.
        """
        node = self.redis.get_node_from_key(stream)  # type: ignore[attr-defined]
        args: list[Any] = ["XREADGROUP", "GROUP", self.s.group, consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        run: Any = self.redis.execute_command  # untyped in redis-py
        return await run(*args, "STREAMS", stream, ">", target_nodes=node)

    async def recover(self) -> None:
        """After a transient failure: on a cluster, stop using a default node that may be dead."""
        replace = getattr(self.redis, "replace_default_node", None)
        if self.cluster and replace is not None:
            try:
                replace()
            except Exception:
                log.debug("could not replace the cluster's default node", exc_info=True)

    async def claim_stale(self, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        """Take over entries whose consumer died (idle > ``idle_ms``), with their delivery counts."""
        out: list[Delivery] = []
        for stream in self.streams:
            if len(out) >= count:
                break
            out += await self._claim(stream, consumer, idle_ms, count - len(out))
        return out

    async def _claim(self, stream: str, consumer: str, idle_ms: int, count: int) -> list[Delivery]:
        _, claimed, _deleted = await self.redis.xautoclaim(
            stream, self.s.group, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
        )
        if not claimed:
            return []
        ids = [eid for eid, _ in claimed]
        info = await self.redis.xpending_range(
            stream, self.s.group, min=ids[0], max=ids[-1], count=len(ids) * 4, consumername=consumer
        )
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in info}
        out = []
        for eid, fields in claimed:
            if not fields:  # entry deleted meanwhile
                await self.redis.xack(stream, self.s.group, eid)
                continue
            out.append(delivery(eid, fields.get(b"job"), stream, deliveries.get(eid, 1 << 30)))
        return out

    async def images(self, jobs: Sequence[Job]) -> list[Fetched]:
        """Each job's photo, whether it was answered already (its done marker), or what failed.

        One job's bad key (another type at its photo key: WRONGTYPE) is that job's problem
        only; its batch-mates get their photos.
        """
        if not jobs:
            return []
        async with self.blobs.pipeline(transaction=False) as pipe:  # any slots
            for job in jobs:
                pipe.exists(done_key(job.job_id))
                pipe.get(job.image_key)
            found: list[Any] = await pipe.execute(raise_on_error=False)
        out = []
        for done, photo in zip(found[::2], found[1::2], strict=True):
            for reply in (done, photo):
                if isinstance(reply, TRANSIENT):  # the broker, not the job: retried by the loop
                    raise reply
            if isinstance(photo, Exception):
                out.append(Fetched(problem=f"photo unreadable: {str(photo)[:120]}"))
            else:
                out.append(Fetched(bytes(photo) if photo else None, done is True or done == 1))
        return out

    async def finish(self, done: Sequence[tuple[Delivery, JobResult | None]]) -> None:
        """Per entry: push the result (TTL) if any, delete the photo, then ack and delete the entry."""
        if done:
            await self._settle(done)

    async def dead_letter(
        self, consumer: str, delivery: Delivery, result: JobResult | None, reason: str = "deliveries"
    ) -> None:
        """Move an entry to its shard's dead-letter stream, answering its caller with ``result``."""
        # No user hash in a dead letter: it would outlive /mood forget. The job without it is
        # enough to debug; a malformed entry keeps only its size.
        job = delivery.job.model_copy(update={"user_hash": ""}).model_dump_json() if delivery.job else ""
        record = {
            "job": job,
            "job_id": delivery.answer_to,
            "malformed_bytes": 0 if delivery.job else len(delivery.raw),
            "entry": delivery.entry_id,
            "deliveries": delivery.deliveries,
            "worker": consumer,
            "reason": reason,
        }
        await self._settle([(delivery, result)], dead=record)

    async def _settle(
        self, done: Sequence[tuple[Delivery, JobResult | None]], dead: dict[Any, Any] | None = None
    ) -> None:
        """Answers (once each) and photo deletions first, then the acks (and the dead letter).

        A crash between the two leaves the entry unacknowledged: it is claimed again, and its
        second answer is dropped by the done marker; nothing is lost, nothing answered twice.
        """
        answers = [(d.answer_to, res) for d, res in done if d.answer_to]
        if self.cluster:  # a script can't ride a cluster pipeline: one call per job, concurrently
            replies = await asyncio.gather(
                *(self._answer(j, res, None) for j, res in answers), return_exceptions=True
            )
        else:
            async with self.blobs.pipeline(transaction=False) as blob:
                for job_id, res in answers:
                    await self._answer(job_id, res, blob)
                replies = await blob.execute(raise_on_error=False)
        for (job_id, _), reply in zip(answers, replies, strict=True):
            if isinstance(reply, TRANSIENT):  # nothing acked: the entries are claimed again
                raise reply
            if isinstance(reply, BaseException):  # one job's keys (e.g. WRONGTYPE): its own, logged
                log.error("job %s: its answer could not be stored: %s", job_id, reply)
        by_shard: dict[str, list[Delivery]] = {}
        for d, _ in done:
            by_shard.setdefault(d.stream, []).append(d)
        for stream, entries in by_shard.items():  # one transaction per shard (one slot)
            async with self.redis.pipeline(transaction=True) as pipe:
                if dead is not None:  # bounded in length and in age (a week)
                    dead_stream = self.dead[stream]
                    pipe.xadd(dead_stream, dead, maxlen=10_000, approximate=True)
                    pipe.xtrim(dead_stream, minid=f"{int((time.time() - DEAD_LETTER_AGE_S) * 1000)}-0")
                for d in entries:
                    pipe.xack(stream, self.s.group, d.entry_id)
                    pipe.xdel(stream, d.entry_id)
                await pipe.execute()

    async def _answer(self, job_id: str, res: JobResult | None, pipe: Any) -> None:
        # A job's photo key is its own (the contract checks it), so the id names every key.
        if res is None:  # nobody is waiting for an answer any more
            if pipe is None:
                await self.blobs.delete(image_key(job_id))
            else:
                pipe.delete(image_key(job_id))
            return
        await self._answer_once(
            keys=[result_key(job_id), done_key(job_id), image_key(job_id), waiting_key(job_id)],
            args=[res.model_dump_json(), self.s.result_ttl_s],
            client=pipe,
        )

    async def prune_consumers(self, keep: str, idle_ms: int) -> list[str]:
        """Remove consumers idle longer than ``idle_ms`` with nothing pending (dead workers)."""
        gone = []
        for stream in self.streams:
            try:
                consumers = await self.redis.xinfo_consumers(stream, self.s.group)
            except ResponseError:
                continue
            for c in consumers:
                name = c["name"].decode() if isinstance(c["name"], bytes) else str(c["name"])
                if name != keep and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
                    await self.redis.xgroup_delconsumer(stream, self.s.group, name)
                    gone.append(name)
        return gone

    async def recent_heartbeats(self, host: str) -> list[tuple[float, str, str]]:
        """When each of this host's consumers last beat, and the model id and precision it said it
        serves (container health check); no keyspace scan."""
        beats: Any = await self.redis.zrange(WORKERS_KEY, 0, -1, withscores=True)
        prefix = f"{host}-".encode()
        mine = [(bytes(name).decode(), float(t)) for name, t in beats if bytes(name).startswith(prefix)]
        said: list[Any] = [await self.redis.get(worker_model_key(name)) for name, _ in mine]
        return [(t, *served(raw)) for (_, t), raw in zip(mine, said, strict=True)]
