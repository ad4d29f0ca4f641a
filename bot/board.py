"""The session message ("board"): rendered from Redis, edited at most once per second per message.

Edits are coalesced across bot processes with two Redis keys per message: ``pending`` (an
edit is scheduled somewhere, so later changes need not schedule another: the scheduled
edit reads the newest state when it runs) and ``lock`` (held for ``interval_s`` after each
edit, so no two edits of one message start less than a second apart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import discord
from redis.asyncio import Redis

from bot import embeds, texts
from bot.sessions import SessionError, Sessions
from bot.tasks import TaskGroup

log = logging.getLogger(__name__)


class EditCoalescer:
    def __init__(self, redis: Redis, interval_s: float = 1.0) -> None:
        self.redis = redis
        self.interval_ms = int(interval_s * 1000)
        self.tasks = TaskGroup("session message edit")

    async def request(self, key: str, edit: Callable[[], Awaitable[None]]) -> None:
        """Make sure ``edit`` runs soon, after any change made before this call."""
        if not await self.redis.set(f"{key}:pending", "1", nx=True, px=self.interval_ms * 10):
            return
        self.tasks.start(self._run(key, edit), name=f"edit {key}")

    async def _run(self, key: str, edit: Callable[[], Awaitable[None]]) -> None:
        # 50 ms on top of the interval: request latency must not squeeze two edits closer together.
        while not await self.redis.set(f"{key}:lock", "1", nx=True, px=self.interval_ms + 50):
            wait = await self.redis.pttl(f"{key}:lock")
            await asyncio.sleep(max(wait, 5) / 1000)
        await self.redis.delete(f"{key}:pending")
        await edit()

    async def drain(self) -> None:
        """Wait for scheduled edits to finish (used by tests)."""
        await self.tasks.drain()

    def cancel(self) -> None:
        self.tasks.cancel()


class SessionBoard:
    """Renders a session into its channel message, through the coalescer."""

    def __init__(
        self,
        client: discord.Client,
        sessions: Sessions,
        coalescer: EditCoalescer,
        controls: Callable[[int], discord.ui.View],
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.coalescer = coalescer
        self.controls = controls  # the session's buttons for a channel id (bot.views.session_view)

    async def act(
        self,
        channel_id: int,
        action: str,
        user_id: int,
        *,
        can_manage: bool = False,
        message_id: int | None = None,
    ) -> str:
        """join / leave / skip / end for one user; returns what to tell them, refreshes the board."""
        s = self.sessions
        try:
            if message_id is None:
                message_id = (await s.view(channel_id)).message_id
            if action == "join":
                text = texts.SESSION_JOINED if await s.join(channel_id, user_id) else texts.SESSION_ALREADY
            elif action == "leave":
                text = texts.SESSION_LEFT if await s.leave(channel_id, user_id) else texts.SESSION_NOT_IN
            elif action == "skip" and (can_manage or await s.is_host(channel_id, user_id)):
                await s.host_skip(channel_id, user_id, can_manage=True)
                text = texts.SESSION_SKIPPED
            elif action == "skip":
                outcome, votes, needed = await s.vote_skip(channel_id, user_id)
                text = (
                    texts.SESSION_SKIPPED
                    if outcome == "skipped"
                    else texts.SESSION_VOTED.format(votes=votes, needed=needed)
                )
            elif action == "end":
                await s.end(channel_id, user_id, can_manage=can_manage)
                text = texts.SESSION_ENDED
            else:
                raise ValueError(f"unknown session action {action!r}")
        except SessionError as exc:
            return texts.session_error(exc.code)
        await self.refresh(channel_id, message_id)
        return text

    async def refresh(self, channel_id: int, message_id: int | None) -> None:
        if message_id is None:
            return

        async def edit() -> None:
            message = self.client.get_partial_messageable(channel_id).get_partial_message(message_id)
            try:
                view = await self.sessions.view(channel_id)
            except SessionError:
                await message.edit(content=texts.SESSION_ENDED, embed=None, view=None)
                return
            await message.edit(content=None, embed=embeds.session_embed(view), view=self.controls(channel_id))

        await self.coalescer.request(f"moodring:board:{{{channel_id}}}:{message_id}", edit)
