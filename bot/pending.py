"""A photo sent before consent, held by reference (never bytes) until the user answers.

When someone's first `/mood check` meets the consent prompt, the attachment's link is kept for
at most ``ttl_s`` in the blob Redis (never on disk) under a random token carried by the Accept
button, so accepting reads the photo already sent instead of asking for a re-upload; declining,
or the token expiring, drops it. Any bot process can take it (the button carries the token).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class PendingPhoto:
    url: str
    strategy: str | None


class PendingChecks:
    def __init__(self, blobs: Redis, hasher: Callable[[int], str], ttl_s: int = 600) -> None:
        self.blobs = blobs
        self.hasher = hasher  # the store's salted user hash
        self.ttl_s = ttl_s

    @staticmethod
    def _key(token: str) -> str:
        return f"moodring:pending:{token}"

    def _user_key(self, user_id: int) -> str:
        return f"moodring:pending-of:{{{self.hasher(user_id)}}}"

    async def hold(self, user_id: int, url: str, strategy: str | None) -> str:
        """Hold one photo link per user (a newer one replaces it); returns the Accept button's token."""
        token = secrets.token_hex(8)
        value = json.dumps({"user": user_id, "url": url, "strategy": strategy})
        old = await self.blobs.getset(self._user_key(user_id), token)
        # not one transaction: the keys sit on different cluster slots; each expires by itself
        async with self.blobs.pipeline(transaction=False) as pipe:
            if old is not None:
                pipe.delete(self._key(old.decode() if isinstance(old, bytes) else str(old)))
            pipe.set(self._key(token), value, ex=self.ttl_s)
            pipe.expire(self._user_key(user_id), self.ttl_s)
            await pipe.execute()
        return token

    async def drop_for(self, user_id: int) -> None:
        """Drop the user's held photo (consent answered another way, or forget)."""
        old = await self.blobs.getdel(self._user_key(user_id))
        if old is not None:
            await self.blobs.delete(self._key(old.decode() if isinstance(old, bytes) else str(old)))

    async def holds(self, token: str, user_id: int) -> bool:
        """Whether ``token`` still holds a photo of this user (without taking it)."""
        raw = await self.blobs.get(self._key(token))
        return raw is not None and int(json.loads(raw)["user"]) == user_id

    async def take(self, token: str, user_id: int) -> PendingPhoto | None:
        """The held photo, once, and only for the user it belongs to."""
        raw = await self.blobs.getdel(self._key(token))
        if raw is None:
            return None
        data = json.loads(raw)
        if int(data["user"]) != user_id:
            return None
        return PendingPhoto(str(data["url"]), data.get("strategy"))

    async def drop(self, token: str) -> None:
        await self.blobs.delete(self._key(token))
