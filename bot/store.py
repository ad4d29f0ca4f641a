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
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from inference.api import community
from inference.api.community import ASKED, SHOWN, LabelRecord
from inference.api.contract import hash_user
from inference.api.errors import MoodringError

DAY = 86_400
BASELINE_PHOTOS = 5  # calm readings averaged into a user's baseline, at most
# Every key a user can have (bot.sessions keeps the "sessions" index, recommender history "recs";
# "contribute" and "labels" are the community calibration's: inference.api.community).
USER_KEYS = (
    "consent",
    "history",
    "corrections",
    "prior",
    "recs",
    "cooldown",
    "baseline",
    "sessions",
    "contribute",
    "labels",
)
CONTRIBUTE_VERSION = 1  # bump when what contributing means changes: everyone is asked again


class NoConsent(MoodringError):
    """The user has not (or no longer) agreed: nothing of theirs may be written."""

    code = "forgotten"


class ReadingGone(MoodringError):
    """The history entry a button names is no longer stored (trimmed, or forgotten)."""

    code = "reading_gone"


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
    raw: dict[str, float] | None = None  # the model's own probabilities when something changed them
    contributing: bool = False  # recorded while the user contributed labels (its label may be learnt from)
    asked: bool = False  # the reply asked "Did I get it right?" (a random share of contributors' readings)
    features: str = ""  # the face's projected features, kept only while contributing


@dataclass(frozen=True, slots=True)
class Recorded:
    """A reading just stored: its id, and whether its reply asks "Did I get it right?"."""

    entry_id: str
    asked: bool = False
    contributing: bool = False


@dataclass(frozen=True, slots=True)
class Labelled:
    """What a label under a reading did: the user's own prior changed, a contribution stored."""

    label: str | None
    kind: str
    contributed: bool


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
        ask_share: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.ask_share = ask_share  # of contributors' readings, the share that asks "Did I get it right?"
        self._rng = rng or random.Random()
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
        return await self.watched_write(user_hash, (), lambda pipe, _seen: fill(pipe))

    async def watched_write(
        self,
        user_hash: str,
        names: Sequence[str],
        fill: Callable[[Any, dict[str, Any]], None],
    ) -> list[Any]:
        """:meth:`consented_write` that also WATCHes and reads the user's keys ``names`` first.

        ``fill(pipe, seen)`` gets each key's value (GET for strings, HGETALL for hashes) as read
        under the watch, so a decision taken on them (contributing or not; the label a reading
        had) is made on what the transaction writes over.
        """
        prefix = user_prefix(user_hash)
        consent_key = f"{prefix}:consent"
        keys = {name: f"{prefix}:{name}" for name in names}
        for _ in range(5):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(consent_key, *keys.values())
                    if not self._consent_ok(await pipe.get(consent_key)):
                        raise NoConsent("no current consent")
                    seen: dict[str, Any] = {}
                    for name, key in keys.items():
                        kind = as_text(await pipe.type(key))
                        if kind == "hash":
                            raw = await pipe.hgetall(key)
                            seen[name] = {as_text(k): as_text(v) for k, v in raw.items()}
                        else:
                            seen[name] = await pipe.get(key)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    fill(pipe, seen)
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

    # contributing labels to the community adapter (a consent of its own) ----------------------
    def _contribute_ok(self, raw: bytes | str | None) -> bool:
        return raw is not None and json.loads(raw).get("version") == CONTRIBUTE_VERSION

    async def contributing(self, user_id: int | str) -> bool:
        """Whether the user chose to let their labelled readings improve readings for everyone."""
        return self._contribute_ok(await self.redis.get(self._key(user_id, "contribute")))

    async def set_contributing(self, user_id: int | str, on: bool) -> int:
        """Opt in (needs the main consent) or withdraw; withdrawing deletes every contribution.

        Returns how many labelled readings were deleted. A withdrawal is counted, so the next
        refit of the adapter (within ``MOODRING_ADAPT_WITHDRAWN_S``) leaves them out.

        Raises:
            NoConsent: opting in without the main consent.
        """
        user_hash = self.hash(user_id)
        key = self._key(user_id, "contribute")
        if on:
            value = json.dumps({"version": CONTRIBUTE_VERSION, "at": time.time()})
            await self.consented_write(user_hash, lambda pipe: pipe.set(key, value, ex=self.retention_s))
            await self.redis.sadd(community.PEOPLE, user_hash)  # type: ignore[misc]
            return 0
        return await self._withdraw(user_id, (key,))

    async def _withdraw(self, user_id: int | str, also: Sequence[str] = ()) -> int:
        """Delete the user's contributions (and ``also`` keys); count it for the next refit."""
        user_hash = self.hash(user_id)
        labels = self._key(user_id, "labels")
        fields = await self.redis.hkeys(labels)  # type: ignore[misc]
        given = len([f for f in fields if not as_text(f).startswith("#")])
        await self.redis.delete(labels, *also)
        left = await self.redis.srem(community.PEOPLE, user_hash)  # type: ignore[misc]
        if left or given:
            await self.redis.incr(community.WITHDRAWN)
        return given

    async def contributions(self, user_id: int | str) -> dict[str, Any]:
        """The user's contributions as JSON-ready data (for export)."""
        raw = await self._hash(user_id, "labels")
        return {
            "readings_shown_while_contributing": int(raw.get(SHOWN, 0)),
            "asked_did_i_get_it_right": int(raw.get(ASKED, 0)),
            "labelled_readings": {k: json.loads(v) for k, v in sorted(raw.items()) if not k.startswith("#")},
        }

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
        """Append a reading (:meth:`record_reading`); its history entry id."""
        recorded = await self.record_reading(user_id, emotion, probs, at, raw=raw, baseline=baseline)
        return recorded.entry_id

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
        return [_entry(as_text(eid), f, fixed) for eid, f in rows]

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
            "contributing": await self.contributing(user_id),
            "contributions": await self.contributions(user_id),
        }

    async def forget(self, user_id: int | str) -> int:
        """Delete every key of the user by name (no scan); returns how many existed.

        Their contributions go too, and leave the fitter's index (the next refit excludes them).
        """
        labels_existed = int(await self.redis.exists(self._key(user_id, "labels")))
        await self._withdraw(user_id)
        return labels_existed + int(await self.redis.delete(*self.user_keys(user_id)))


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
        contributing=f.get(b"c") == b"1",
        asked=f.get(b"ask") == b"1",
        features=as_text(f[b"f"]) if b"f" in f else "",
    )
