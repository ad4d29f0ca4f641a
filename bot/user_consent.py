"""Consent in Redis: a user's two consents, and writes that happen only while consent stands
(checked atomically with the write, ``WATCH`` on the consent key)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from bot.user_records import CONTRIBUTE_VERSION, DAY, USER_KEYS, NoConsent, user_prefix
from inference.api import community
from inference.api.community import ASKED, SHOWN
from inference.api.connect import as_text
from inference.api.contract import hash_user


class ConsentStore:
    """The base of :class:`bot.store.UserStore`: the user's keys, consent-guarded writes, and the
    two consents (to be remembered at all; to help improve readings for everyone). All methods
    take the raw Discord user id and hash it."""

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

    # the user's keys, and forgetting them -----------------------------------------
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

    async def forget(self, user_id: int | str) -> int:
        """Delete every key of the user by name (no scan); returns how many existed.

        Their contributions go too, and leave the fitter's index (the next refit excludes them).
        """
        labels_existed = int(await self.redis.exists(self._key(user_id, "labels")))
        await self._withdraw(user_id)
        return labels_existed + int(await self.redis.delete(*self.user_keys(user_id)))
