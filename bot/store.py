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
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from bot.user_consent import ConsentStore
from bot.user_records import (
    BASELINE_PHOTOS,
    DAY,
    USER_KEYS,
    Labelled,
    MoodEntry,
    NoConsent,
    ReadingGone,
    Recorded,
    entry_from_fields,
    summarize,
    user_prefix,
)
from inference.api import community
from inference.api.community import ASKED, SHOWN, LabelRecord
from inference.api.connect import as_text
from recommender.platforms import CHOICES, DEFAULT, Choice

# The store's own types and names, defined in bot.user_records; callers import them from here.
__all__ = [
    "BASELINE_PHOTOS",
    "DAY",
    "USER_KEYS",
    "BotHistory",
    "Labelled",
    "MoodEntry",
    "NoConsent",
    "ReadingGone",
    "Recorded",
    "UserStore",
    "as_text",
    "summarize",
    "user_prefix",
]


class UserStore(ConsentStore):
    """Typed access to one Redis; all methods take the raw Discord user id and hash it.

    Consent and consent-guarded writes come from :class:`~bot.user_consent.ConsentStore`; this
    class holds the readings, labels, prior, calm face, cooldown, export and forget.
    """

    async def record(self, user_id: int | str, emotion: str, probs: Mapping[str, float], **extra: Any) -> str:
        """Append a reading (:meth:`record_reading`, which takes the same keywords); its history entry id."""
        return (await self.record_reading(user_id, emotion, probs, **extra)).entry_id

    async def record_reading(
        self,
        user_id: int | str,
        emotion: str,
        probs: Mapping[str, float],
        at: float | None = None,
        *,
        raw: Mapping[str, float] | None = None,
        baseline: bool = False,
        features: str = "",
    ) -> Recorded:
        """Append a reading; entries older than the retention window are trimmed on write.

        ``raw`` (the model's own probabilities, kept when an adapter, prior or baseline changed
        them) lets the reading become the user's calm face, or a labelled reading, later;
        ``baseline`` marks a calm-relative reading. For a user who contributes labels the entry
        also keeps ``features`` (the face's projected features), counts as shown to them, and on
        a random share of such readings the reply asks "Did I get it right?".
        """
        at = at or time.time()
        user_hash = self.hash(user_id)
        key = self._key(user_id, "history")
        labels = self._key(user_id, "labels")
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
        asked = self._rng.random() < self.ask_share  # drawn before, and whatever, the reading says
        state = {"contributing": False}

        def fill(pipe: Any, seen: dict[str, Any]) -> None:
            contributing = self._contribute_ok(seen["contribute"])
            state["contributing"] = contributing
            entry = dict(fields)
            if contributing:
                entry["c"] = "1"
                if features:
                    entry["f"] = features
                if asked:
                    entry["ask"] = "1"
            pipe.xadd(key, entry, id=entry_id, maxlen=self.max_entries, approximate=True)
            pipe.xtrim(key, minid=min_id, approximate=False)
            pipe.expire(key, self.retention_s)
            if contributing:
                pipe.hincrby(labels, SHOWN, 1)
                if asked:
                    pipe.hincrby(labels, ASKED, 1)
                pipe.expire(labels, self.retention_s)

        res = await self.watched_write(user_hash, ("contribute",), fill)
        contributing = state["contributing"]
        if contributing:  # the fitter's index (another slot on a cluster: outside the transaction)
            await self.redis.sadd(community.PEOPLE, user_hash)  # type: ignore[misc]
        return Recorded(as_text(res[0]), asked and contributing, contributing)

    async def history(
        self, user_id: int | str, days: int | None = None, limit: int = 1000
    ) -> list[MoodEntry]:
        key = self._key(user_id, "history")
        start = "-" if days is None else str(int((time.time() - days * DAY) * 1000))
        rows = await self.redis.xrevrange(key, "+", start, count=limit) or []
        fixed = await self._hash(user_id, "corrections")
        return [entry_from_fields(as_text(eid), f, fixed) for eid, f in rows]

    # labels under a reading → per-user prior, and (when contributing) the community's labels ----
    async def correct(self, user_id: int | str, entry_id: str, emotion: str) -> Labelled:
        """The user says entry ``entry_id`` was really ``emotion`` (the "Not how I feel?" pick)."""
        return await self.label(user_id, entry_id, emotion)

    async def label(self, user_id: int | str, entry_id: str, label: str | None) -> Labelled:
        """The user's label for one reading: its class, or None for a bare "no" to "Did I get it right?".

        One label per reading: a second pick replaces the first, in the user's own prior (a
        correction to c counts once, whatever was picked before) and in their contribution. The
        labelled reading (the network's own probabilities and features, the label, how it was
        given) is stored for the community adapter only while the user contributes, and only for
        readings recorded while they did.

        Raises:
            NoConsent: no current consent (an old button after forget or decline).
            ReadingGone: the entry is no longer stored.
            ValueError: an unknown class.
        """
        if label is not None and label not in self.classes:
            raise ValueError(f"unknown emotion {label!r}")
        if not await self.consent(user_id):  # (checked again, atomically, with the write)
            raise NoConsent("no current consent")
        entry = await self.entry(user_id, entry_id)
        if entry is None:
            raise ReadingGone(entry_id)
        served = entry.emotion
        if entry.asked:
            kind = "yes" if label == served else "no"
        else:
            kind = "confirm" if label == served else "correct"
        corrections, prior = self._key(user_id, "corrections"), self._key(user_id, "prior")
        labels = self._key(user_id, "labels")
        state = {"contributed": False}

        def fill(pipe: Any, seen: dict[str, Any]) -> None:
            old = (seen["corrections"] or {}).get(entry_id)
            new = label if label is not None and label != served else None
            if label is not None and old != new:  # a bare "no" keeps what was picked before
                if old is not None:
                    pipe.hincrby(prior, old, -1)
                    pipe.hdel(corrections, entry_id)
                if new is not None:
                    pipe.hset(corrections, entry_id, new)
                    pipe.hincrby(prior, new, 1)
                pipe.expire(corrections, self.retention_s)
                pipe.expire(prior, self.retention_s)
            if entry.contributing and self._contribute_ok(seen["contribute"]):
                record = LabelRecord(
                    probs=entry.raw or entry.probs,
                    features=entry.features,
                    served=served,
                    label=label,
                    kind=kind,  # type: ignore[arg-type]
                )
                pipe.hset(labels, entry_id, record.model_dump_json())
                pipe.expire(labels, self.retention_s)
                state["contributed"] = True

        await self.watched_write(self.hash(user_id), ("corrections", "contribute"), fill)
        return Labelled(label, kind, state["contributed"])

    async def prior(self, user_id: int | str) -> dict[str, float]:
        """The user's class weights from their corrections (Laplace-smoothed), sent with each job.

        w(c) = (1 + n_c) / (1 + mean n), where n_c counts corrections to c; the worker applies
        p'(c) ∝ p(c) · w(c) to the user's face before labelling and explaining it. No
        corrections: an empty dict (identity).
        """
        counts = {
            k: int(v)
            for k, v in (await self._hash(user_id, "prior")).items()
            if k in self.classes and int(v) > 0
        }
        if not counts:
            return {}
        mean = sum(counts.values()) / len(self.classes)
        return {c: (1 + counts.get(c, 0)) / (1 + mean) for c in self.classes}

    # music platform --------------------------------------------------------------------
    async def platform(self, user_id: int | str) -> Choice:
        """Where the user's Listen links open (``/mood music``); never chosen: Spotify."""
        raw = await self.redis.get(self._key(user_id, "platform"))
        chosen = as_text(raw) if raw is not None else ""
        return chosen if chosen in CHOICES else DEFAULT

    async def set_platform(self, user_id: int | str, choice: Choice) -> None:
        """Remember the platform (only with consent, like the rest: export shows it, forget
        deletes it). Raises :class:`NoConsent`."""
        if choice not in CHOICES:
            raise ValueError(f"not a platform: {choice!r}")
        key = self._key(user_id, "platform")
        await self.consented_write(self.hash(user_id), lambda pipe: pipe.set(key, choice))

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
        return entry_from_fields(entry_id, rows[0][1], {}) if rows else None

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

    # export (forget is the consent side's: bot.user_consent) ------------------------
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
            "music_platform": as_text(raw)
            if (raw := await self.redis.get(self._key(user_id, "platform")))
            else None,
            "contributing": await self.contributing(user_id),
            "contributions": await self.contributions(user_id),
        }


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
