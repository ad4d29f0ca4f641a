"""Replies that went out at the link deadline get the links that landed later, by an edit.

A reply waits at most the resolver's deadline (~300 ms) for track links; what a cold cache
doesn't know by then goes out as a search on the listener's platform, and the lookup goes on in
the background. :class:`LateLinks` waits for that lookup (a few seconds at most) and edits the
reply in place, so the message a user keeps opens the exact tracks. Nothing is stored: if this
process stops meanwhile, the reply keeps its search links and the cache has the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import discord
from redis.exceptions import RedisError

from bot.tasks import TaskGroup
from recommender.platforms import Choice
from recommender.ranking import Recommendation
from recommender.service import Recommender

log = logging.getLogger(__name__)

Render = Callable[[list[Recommendation]], dict[str, Any]]  # the edit's arguments, from the new picks


class LateLinks:
    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self.tasks = TaskGroup("late links edit")

    def follow(
        self,
        message: discord.WebhookMessage | discord.Message | None,
        picks: Sequence[Recommendation],
        platform: Choice | None,
        render: Render,
    ) -> None:
        """Edit ``message`` (sent with ``picks``) with ``render(better picks)`` once the links left
        behind at the deadline land; nothing if none was left or none came."""
        if message is None or platform is None or not picks or self.recommender.links is None:
            return
        self.tasks.start(self._edit(message, list(picks), platform, render), name="late links")

    async def _edit(
        self,
        message: discord.WebhookMessage | discord.Message,
        picks: list[Recommendation],
        platform: Choice,
        render: Render,
    ) -> None:
        try:
            better = await self.recommender.settled(picks, platform)
            if better is not None:
                await message.edit(**render(better))
                log.info("a reply got the track links that came after its deadline")
        except (discord.HTTPException, RedisError) as exc:  # the reply keeps its search links
            log.info("could not add late track links to a reply: %s", exc)
