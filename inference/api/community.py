"""What users teach a deployment, in Redis: labelled readings (the bot writes them) and the
community adapter's versions (the fitter writes them, every worker reads the active one).

No torch, no numpy: the bot, the worker and ``moodring adapt`` share this layout.

Per user, under the user's hash tag (deleted by ``/mood forget`` with their other keys):

* ``moodring:user:{<hash>}:contribute``: the separate opt-in to "help improve readings for
  everyone" (JSON with its version and time). Without it nothing below is written.
* ``moodring:user:{<hash>}:labels``: a hash, one field per labelled reading (the history entry's
  id → :class:`LabelRecord` JSON: the model's own probabilities, the label, how it was given),
  and two counters, ``#shown`` (readings shown while contributing) and ``#asked`` (of which the
  bot asked "Did I get it right?"), from which the fitter estimates how feedback was collected.

Deployment-wide, under the ``{adapt}`` hash tag (one cluster slot, so they change together):

* ``…:people``: the set of contributors' hashes (the fitter's index; no keyspace scan).
* ``…:versions``: a hash, version → the adapter's JSON (:class:`inference.serve.adapter.AdapterFile`).
* ``…:active``: the version workers apply ("" or missing: none); ``…:log`` the activations, newest
  first, for rollback; ``…:seq`` the version counter; ``…:lock`` held by whoever is fitting;
  ``…:withdrawn`` contributors who left since the last fit (a refit is then due).
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

Kind = Literal["confirm", "correct", "yes", "no"]
SHOWN, ASKED = "#shown", "#asked"
TAG = "moodring:adapt:{adapt}"
PEOPLE = f"{TAG}:people"
VERSIONS = f"{TAG}:versions"
ACTIVE = f"{TAG}:active"
LOG = f"{TAG}:log"
SEQ = f"{TAG}:seq"
LOCK = f"{TAG}:lock"
WITHDRAWN = f"{TAG}:withdrawn"
LAST_FIT = f"{TAG}:last_fit"
KEEP_VERSIONS = 20  # older versions are dropped (the active one and the log's are kept)


def encode_features(values: Any) -> str:
    """Projected features as stored and sent: base64 of little-endian float16 (2 bytes a number)."""
    numbers = [float(v) for v in values]
    return base64.b64encode(struct.pack(f"<{len(numbers)}e", *numbers)).decode()


def decode_features(text: str, dims: int) -> tuple[float, ...] | None:
    """The numbers of :func:`encode_features`, or None if absent, malformed or of another size."""
    if not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) != 2 * dims:
        return None
    return tuple(struct.unpack(f"<{dims}e", raw))


def contribute_key(user_hash: str) -> str:
    return f"moodring:user:{{{user_hash}}}:contribute"


def labels_key(user_hash: str) -> str:
    return f"moodring:user:{{{user_hash}}}:labels"


class LabelRecord(BaseModel):
    """One labelled reading: never a photo, a crop or an embedding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probs: dict[str, float]  # the network's own, before adapter, prior and calm face
    features: str = ""  # the face's projected features: base64 of little-endian float16 ("" none)
    served: str  # the label the user was shown
    label: str | None  # what the user said it is (None: a "no" without a pick)
    kind: Kind
    at: float = Field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Contribution:
    """Everything one contributor gave: their labelled readings and what they were shown."""

    user_hash: str
    shown: int
    asked: int
    records: tuple[LabelRecord, ...]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_labels(user_hash: str, raw: Mapping[Any, Any]) -> Contribution:
    """A contributor's ``labels`` hash as a :class:`Contribution` (bad fields are skipped)."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    records = []
    for name, value in sorted(fields.items()):
        if name.startswith("#"):
            continue
        try:
            records.append(LabelRecord.model_validate_json(value))
        except ValueError:
            continue
    return Contribution(
        user_hash, int(fields.get(SHOWN, 0) or 0), int(fields.get(ASKED, 0) or 0), tuple(records)
    )


async def read_contributions(redis: Redis, batch: int = 500) -> list[Contribution]:
    """Every current contributor's labelled readings (those who left are dropped from the index)."""
    people = sorted(_text(p) for p in await redis.smembers(PEOPLE))  # type: ignore[misc]
    out: list[Contribution] = []
    gone: list[str] = []
    for start in range(0, len(people), batch):
        chunk = people[start : start + batch]
        async with redis.pipeline(transaction=False) as pipe:
            for user_hash in chunk:
                pipe.hgetall(labels_key(user_hash))
            rows = await pipe.execute()
        for user_hash, raw in zip(chunk, rows, strict=True):
            if raw:
                out.append(parse_labels(user_hash, raw))
            else:
                gone.append(user_hash)
    if gone:
        await redis.srem(PEOPLE, *gone)  # type: ignore[misc]
    return out


class AdapterRegistry:
    """The adapter's versions in Redis: store, activate, roll back, and one fitter at a time."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def active_version(self) -> str | None:
        raw = await self.redis.get(ACTIVE)
        return _text(raw) or None if raw is not None else None

    async def get(self, version: str) -> str | None:
        raw = await self.redis.hget(VERSIONS, version)  # type: ignore[misc]
        return None if raw is None else _text(raw)

    async def active(self) -> tuple[str, str] | None:
        """(version, JSON) of the adapter workers apply now, or None."""
        version = await self.active_version()
        if version is None:
            return None
        text = await self.get(version)
        return None if text is None else (version, text)

    async def next_version(self) -> str:
        return f"v{int(await self.redis.incr(SEQ))}"

    async def save(self, version: str, text: str, activate: bool) -> None:
        """Store a fitted version (activated or not); activating it moves ``active`` and the log."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(VERSIONS, version, text)
            pipe.set(LAST_FIT, str(time.time()))
            if activate:
                pipe.set(ACTIVE, version)
                pipe.lpush(LOG, version)
                pipe.ltrim(LOG, 0, KEEP_VERSIONS - 1)
            await pipe.execute()
        await self._prune()

    async def deactivate(self, why: str) -> None:
        """Apply no adapter from now on (an empty entry in the log marks the switch-off)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(ACTIVE, "")
            pipe.lpush(LOG, f"-{why}"[:200])
            pipe.ltrim(LOG, 0, KEEP_VERSIONS - 1)
            await pipe.execute()

    async def rollback(self) -> str | None:
        """Return to the version active before the current one (or to none); the new active one."""
        log = [_text(v) for v in await self.redis.lrange(LOG, 0, -1)]  # type: ignore[misc]
        log = log[1:]  # the current state: an activation, or a switch-off ("-why")
        previous = log[0] if log and not log[0].startswith("-") else None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(LOG)
            if log:
                pipe.rpush(LOG, *log)
            pipe.set(ACTIVE, previous or "")
            await pipe.execute()
        return previous

    async def versions(self) -> dict[str, dict[str, Any]]:
        """Every stored version's record (as parsed JSON), by version."""
        raw = await self.redis.hgetall(VERSIONS)  # type: ignore[misc]
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def last_fit(self) -> float | None:
        raw = await self.redis.get(LAST_FIT)
        return None if raw is None else float(raw)

    async def touch(self) -> None:
        """Note that a fit ran now, even one that stored nothing (the schedule counts from it)."""
        await self.redis.set(LAST_FIT, str(time.time()))

    async def withdrawn(self) -> int:
        return int(await self.redis.get(WITHDRAWN) or 0)

    async def clear_withdrawn(self, seen: int) -> None:
        await self.redis.decrby(WITHDRAWN, seen)

    async def lock(self, owner: str, ttl_s: int = 900) -> bool:
        """Take the fitter's lock (two fitters never run at once); False if someone holds it."""
        return bool(await self.redis.set(LOCK, owner, nx=True, ex=ttl_s))

    async def unlock(self, owner: str) -> None:
        """Release the lock only if this owner still holds it."""
        script = (
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
        )
        await self.redis.eval(script, 1, LOCK, owner)  # type: ignore[misc]

    async def _prune(self) -> None:
        keep = {await self.active_version() or ""}
        keep |= {_text(v) for v in await self.redis.lrange(LOG, 0, -1)}  # type: ignore[misc]
        stored = await self.versions()
        by_age = sorted(stored, key=lambda v: stored[v].get("fitted_at", 0.0), reverse=True)
        drop = [v for v in by_age[KEEP_VERSIONS:] if v not in keep]
        if drop:
            await self.redis.hdel(VERSIONS, *drop)  # type: ignore[misc]
