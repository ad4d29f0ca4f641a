"""Per-user state in Redis: mood history, consent, corrections, cooldowns. No Discord here.

Every key of a user lives under one hash tag, ``moodring:user:{<user hash>}:<name>``, with a
name from :data:`USER_KEYS`: ``forget`` deletes exactly those (no keyspace scan, so it costs the
same with millions of other keys), and they land on one cluster slot. Every write of user data
happens only while the user's current consent stands, checked atomically with the write
(``WATCH`` on the consent key), so an old button pressed after ``/mood forget`` or a decline
can't bring data back. Only labels, probabilities and times are stored — never images,
heatmaps or URLs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from inference.api.contract import hash_user
from inference.api.errors import MoodringError

DAY = 86_400
BASELINE_PHOTOS = 5  # calm readings averaged into a user's baseline, at most
# Every key a user can have (bot.sessions keeps the "sessions" index, recommender history "recs").
USER_KEYS = ("consent", "history", "corrections", "prior", "recs", "cooldown", "baseline", "sessions")


class NoConsent(MoodringError):
    """The user has not (or no longer) agreed: nothing of theirs may be written."""

    code = "forgotten"


def as_text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def user_prefix(user_hash: str) -> str:
    return f"moodring:user:{{{user_hash}}}"


@dataclass(frozen=True, slots=True)
class MoodEntry:
    at: float
    emotion: str
    confidence: float
    probs: dict[str, float]
    corrected: str | None = None
    baseline: bool = False  # read relative to the user's calm face
    raw: dict[str, float] | None = None  # the model's own probabilities when a prior/baseline changed them


def summarize(entries: Sequence[MoodEntry], days: int) -> dict[str, Any]:
    """Counts per emotion (a correction counts as what the user said) and the most frequent one."""
    counts = Counter(e.corrected or e.emotion for e in entries)
    top = counts.most_common(1)[0][0] if counts else None
    return {"days": days, "entries": len(entries), "counts": dict(counts), "most_frequent": top}


class UserStore:
    """Typed access to one Redis; all methods take the raw Discord user id and hash it."""

    def __init__(
        self,
        redis: Redis,
        classes: Sequence[str],
        retention_days: int = 90,
        max_entries: int = 1000,
        consent_version: int = 1,
        salt: str = "moodring",
    ) -> None:
        self.redis = redis
        self.salt = salt
        self.classes = tuple(classes)
        self.retention_s = retention_days * DAY
        self.max_entries = max_entries
        self.consent_version = consent_version

    def hash(self, user_id: int | str) -> str:
        """The user's pseudonym in keys and logs, salted with this deployment's secret."""
        return hash_user(user_id, self.salt)

    def _key(self, user_id: int | str, name: str) -> str:
        return f"{user_prefix(self.hash(user_id))}:{name}"

    def _consent_ok(self, raw: bytes | str | None) -> bool:
        return raw is not None and json.loads(raw).get("version") == self.consent_version

    async def consented_write(self, user_hash: str, fill: Callable[[Any], None]) -> list[Any]:
        """Queue writes with ``fill(pipe)`` and run them only if the user's consent stands.

        The consent key is WATCHed: a forget or decline between the check and the write aborts
        the transaction. Raises :class:`NoConsent` when there is no current consent.
        """
        consent_key = f"{user_prefix(user_hash)}:consent"
        for _ in range(5):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(consent_key)
                    if not self._consent_ok(await pipe.get(consent_key)):
                        raise NoConsent("no current consent")
                    pipe.multi()  # type: ignore[no-untyped-call]
                    fill(pipe)
                    return list(await pipe.execute())
                except WatchError:
                    continue  # consent changed meanwhile: look again
        raise NoConsent("consent kept changing")

    async def _hash(self, user_id: int | str, name: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self._key(user_id, name))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    # consent -----------------------------------------------------------------
    async def consent(self, user_id: int | str) -> bool:
        """Whether the user accepted the current consent version (a new version asks again)."""
        return self._consent_ok(await self.redis.get(self._key(user_id, "consent")))

    async def set_consent(self, user_id: int | str, accepted: bool) -> None:
        """Record an acceptance; declining wipes everything and stores nothing, not even the answer."""
        if not accepted:
            await self.forget(user_id)
            return
        await self.redis.set(
            self._key(user_id, "consent"),
            json.dumps({"version": self.consent_version, "accepted": True, "at": time.time()}),
            ex=self.retention_s,
        )

    # history -----------------------------------------------------------------
    async def record(
        self,
        user_id: int | str,
        emotion: str,
        probs: Mapping[str, float],
        at: float | None = None,
        *,
        raw: Mapping[str, float] | None = None,
        baseline: bool = False,
    ) -> str:
        """Append a reading; entries older than the retention window are trimmed on write.

        ``raw`` (the model's own probabilities, kept when a prior or baseline changed them) lets
        the reading become the user's calm face later; ``baseline`` marks a calm-relative reading.
        """
        at = at or time.time()
        key = self._key(user_id, "history")
        min_id = f"{int((at - self.retention_s) * 1000)}-0"
        entry_id = f"{int(at * 1000)}-*"
        fields: dict[Any, Any] = {
            "emotion": emotion,
            "confidence": f"{max(probs.values()):.4f}",
            "probs": json.dumps({k: round(float(v), 4) for k, v in probs.items()}),
        }
        if raw:
            fields["raw"] = json.dumps({k: round(float(v), 4) for k, v in raw.items()})
        if baseline:
            fields["baseline"] = "1"

        def fill(pipe: Any) -> None:
            pipe.xadd(key, fields, id=entry_id, maxlen=self.max_entries, approximate=True)
            pipe.xtrim(key, minid=min_id, approximate=False)
            pipe.expire(key, self.retention_s)

        res = await self.consented_write(self.hash(user_id), fill)
        return as_text(res[0])

    async def history(
        self, user_id: int | str, days: int | None = None, limit: int = 1000
    ) -> list[MoodEntry]:
        key = self._key(user_id, "history")
        start = "-" if days is None else str(int((time.time() - days * DAY) * 1000))
        rows = await self.redis.xrevrange(key, "+", start, count=limit) or []
        fixed = await self._hash(user_id, "corrections")
        return [_entry(as_text(eid), f, fixed) for eid, f in rows]

    # corrections → per-user prior ------------------------------------------------
    async def correct(self, user_id: int | str, entry_id: str, emotion: str) -> None:
        """The user says entry ``entry_id`` was really ``emotion``; update their prior."""
        if emotion not in self.classes:
            raise ValueError(f"unknown emotion {emotion!r}")

        def fill(pipe: Any) -> None:
            pipe.hset(self._key(user_id, "corrections"), entry_id, emotion)
            pipe.hincrby(self._key(user_id, "prior"), emotion, 1)
            pipe.expire(self._key(user_id, "corrections"), self.retention_s)
            pipe.expire(self._key(user_id, "prior"), self.retention_s)

        await self.consented_write(self.hash(user_id), fill)

    async def prior(self, user_id: int | str) -> dict[str, float]:
        """The user's class weights from their corrections (Laplace-smoothed), sent with each job.

        w(c) = (1 + n_c) / (1 + mean n), where n_c counts corrections to c; the worker applies
        p'(c) ∝ p(c) · w(c) to the user's face before labelling and explaining it. No
        corrections: an empty dict (identity).
        """
        counts = {k: int(v) for k, v in (await self._hash(user_id, "prior")).items() if k in self.classes}
        if not counts:
            return {}
        mean = sum(counts.values()) / len(self.classes)
        return {c: (1 + counts.get(c, 0)) / (1 + mean) for c in self.classes}

    # calm-face baseline -----------------------------------------------------------
    async def baseline(self, user_id: int | str) -> dict[str, Any] | None:
        """The user's calm face: ``{"probs": {...}, "photos": n, "at": time}``, or None."""
        raw = await self.redis.get(self._key(user_id, "baseline"))
        return None if raw is None else dict(json.loads(raw))

    async def add_baseline(self, user_id: int | str, probs: Mapping[str, float]) -> dict[str, Any]:
        """Average one more calm reading into the baseline (only its probabilities, never an image).

        Keeps a running mean of up to ``BASELINE_PHOTOS`` readings, so a new calm photo still
        counts once that many were given.
        """
        known = {c: float(probs.get(c, 0.0)) for c in self.classes}
        total = sum(known.values()) or 1.0
        known = {c: v / total for c, v in known.items()}
        old = await self.baseline(user_id)
        n = min(int(old["photos"]), BASELINE_PHOTOS - 1) if old else 0
        before: dict[str, float] = old["probs"] if old else {}
        mean = {c: (before.get(c, 0.0) * n + v) / (n + 1) for c, v in known.items()}
        value = {"probs": {c: round(v, 5) for c, v in mean.items()}, "photos": n + 1, "at": time.time()}
        key = self._key(user_id, "baseline")
        await self.consented_write(
            self.hash(user_id), lambda pipe: pipe.set(key, json.dumps(value), ex=self.retention_s)
        )
        return value

    async def clear_baseline(self, user_id: int | str) -> bool:
        return bool(await self.redis.delete(self._key(user_id, "baseline")))

    async def entry(self, user_id: int | str, entry_id: str) -> MoodEntry | None:
        """One history entry by id (for buttons under a reading)."""
        rows = await self.redis.xrange(self._key(user_id, "history"), entry_id, entry_id)
        return _entry(entry_id, rows[0][1], {}) if rows else None

    # cooldowns -------------------------------------------------------------------
    async def take_cooldown(self, user_id: int | str, seconds: float) -> float:
        """0 if the user may act now (and starts the cooldown), else seconds left."""
        if seconds <= 0:
            return 0.0
        key = self._key(user_id, "cooldown")
        if await self.redis.set(key, "1", nx=True, px=int(seconds * 1000)):
            return 0.0
        left = await self.redis.pttl(key)
        return max(0.0, left / 1000)

    async def release_cooldown(self, user_id: int | str) -> None:
        """Give the pause back (a check that failed shouldn't cost the user a wait)."""
        await self.redis.delete(self._key(user_id, "cooldown"))

    # export / forget -------------------------------------------------------------
    def user_keys(self, user_id: int | str) -> list[str]:
        """Every key the user can have (:data:`USER_KEYS`), whether it exists or not."""
        return [self._key(user_id, name) for name in USER_KEYS]

    async def keys(self, user_id: int | str) -> list[str]:
        """The user's keys that exist now."""
        names = self.user_keys(user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in names:
                pipe.exists(key)
            found = await pipe.execute()
        return [key for key, n in zip(names, found, strict=True) if n]

    async def export(self, user_id: int | str) -> dict[str, Any]:
        """Everything stored about the user, as JSON-ready data."""
        return {
            "consent": await self.consent(user_id),
            "history": [asdict(e) for e in await self.history(user_id)],
            "prior": {k: int(v) for k, v in (await self._hash(user_id, "prior")).items()},
            "calm_face_baseline": await self.baseline(user_id),
            "recent_recommendations": [
                as_text(k) for k in await self.redis.lrange(self._key(user_id, "recs"), 0, -1)
            ],
        }

    async def forget(self, user_id: int | str) -> int:
        """Delete every key of the user by name (no scan); returns how many existed."""
        return int(await self.redis.delete(*self.user_keys(user_id)))


class BotHistory:
    """Recently recommended tracks (novelty), as the recommender's ``History``.

    A user's list lives under their hash tag and is written only while their consent stands
    (:meth:`UserStore.consented_write`); a listening session's (``user`` = ``session:<channel>``)
    lives with the session's keys and ends with it.
    """

    def __init__(self, store: UserStore, size: int = 30, session_ttl_s: int = 3600) -> None:
        self.store = store
        self.size = size
        self.session_ttl_s = session_ttl_s

    @staticmethod
    def key(user: str) -> str:
        if user.startswith("session:"):
            return f"moodring:session:{{{user.removeprefix('session:')}}}:recs"
        return f"{user_prefix(user)}:recs"

    async def recent(self, user: str) -> list[str]:
        return [as_text(k) for k in await self.store.redis.lrange(self.key(user), 0, self.size - 1)]

    async def add(self, user: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        key = self.key(user)

        def fill(pipe: Any) -> None:
            pipe.lpush(key, *keys)
            pipe.ltrim(key, 0, self.size - 1)
            pipe.expire(key, self.session_ttl_s if user.startswith("session:") else self.store.retention_s)

        if user.startswith("session:"):
            async with self.store.redis.pipeline(transaction=True) as pipe:
                fill(pipe)
                await pipe.execute()
            return
        # nothing is remembered about someone who hasn't agreed (or asked to be forgotten)
        with contextlib.suppress(NoConsent):
            await self.store.consented_write(user, fill)


def _entry(entry_id: str, f: Any, corrections: Mapping[str, str]) -> MoodEntry:
    """A history stream entry (its id and fields) as a :class:`MoodEntry`."""
    return MoodEntry(
        at=int(entry_id.split("-")[0]) / 1000,
        emotion=as_text(f[b"emotion"]),
        confidence=float(f[b"confidence"]),
        probs=json.loads(f[b"probs"]),
        corrected=corrections.get(entry_id),
        baseline=f.get(b"baseline") == b"1",
        raw=json.loads(f[b"raw"]) if b"raw" in f else None,
    )
