"""Checks that outlive their bot process: any process finishes them, or the user hears it failed.

A `/mood check` is deferred ("thinking…") and its job queued; if that bot process dies before the
worker answers, the reply would stay "thinking" for ever. So each check in flight is written to a
ledger (the blob Redis: the interaction token is a credential, never kept on disk) with the
process that owns it, and every process beats a liveness key. A loop in every process adopts the
checks of processes that stopped beating (one wins: ``ZREM``), waits for the worker's answer
through :meth:`inference.api.client.JobClient.resume` and edits the original reply through the
interaction webhook (its token lives 15 minutes); if no answer comes, the reply says the check
failed and the cooldown is given back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger(__name__)

# Sorted set job id -> deadline; its records share its hash tag (one cluster slot, so opening
# and closing a check stay one transaction). Checks in flight are few: one slot carries them.
LEDGER = "moodring:{checks}"
TOKEN_LIFETIME_S = 15 * 60  # Discord's interaction tokens


def process_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class OpenCheck:
    job_id: str
    application_id: int
    token: str
    user_id: int
    strategy: str | None
    deadline: float


class CheckLedger:
    def __init__(self, redis: Redis, process: str, beat_ttl_s: int = 6) -> None:
        self.redis = redis
        self.process = process
        self.beat_ttl_s = beat_ttl_s

    @staticmethod
    def _record(job_id: str) -> str:
        return f"moodring:{{checks}}:{job_id}"

    @staticmethod
    def _alive(process: str) -> str:
        return f"moodring:botproc:{process}"

    async def open(self, check: OpenCheck) -> None:
        value = {
            "owner": self.process,
            "application_id": check.application_id,
            "token": check.token,
            "user_id": check.user_id,
            "strategy": check.strategy,
            "deadline": check.deadline,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._record(check.job_id), json.dumps(value), ex=TOKEN_LIFETIME_S)
            pipe.zadd(LEDGER, {check.job_id: check.deadline})
            await pipe.execute()

    async def close(self, job_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(LEDGER, job_id)
            pipe.delete(self._record(job_id))
            await pipe.execute()

    async def beat(self) -> None:
        await self.redis.set(self._alive(self.process), "1", ex=self.beat_ttl_s)

    async def adopt(self) -> list[OpenCheck]:
        """Take over the open checks of processes that stopped beating (each goes to one process)."""
        now = time.time()
        # forget ledger entries whose token can no longer answer anyone
        await self.redis.zremrangebyscore(LEDGER, 0, now - TOKEN_LIFETIME_S)
        taken = []
        for raw_id in await self.redis.zrange(LEDGER, 0, 200):
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            raw = await self.redis.get(self._record(job_id))
            if raw is None:
                await self.redis.zrem(LEDGER, job_id)
                continue
            rec: dict[str, Any] = json.loads(raw)
            if rec["owner"] == self.process or await self.redis.exists(self._alive(rec["owner"])):
                continue
            if not await self.redis.zrem(LEDGER, job_id):
                continue  # another process took it first
            await self.redis.delete(self._record(job_id))
            log.warning("adopting check %s of bot process %s, which stopped", job_id, rec["owner"])
            taken.append(
                OpenCheck(
                    job_id,
                    int(rec["application_id"]),
                    str(rec["token"]),
                    int(rec["user_id"]),
                    rec.get("strategy"),
                    float(rec["deadline"]),
                )
            )
        return taken
