"""What components and cogs may reach through ``interaction.client``: a narrow protocol.

Views and cogs depend on this, not on :class:`bot.app.MoodringBot`, so the bot object can
import them without an import loop.
"""

from __future__ import annotations

from typing import Protocol, cast

import discord

from bot.board import SessionBoard
from bot.late_links import LateLinks
from bot.services import Services


class BotContext(Protocol):
    services: Services
    board: SessionBoard
    late_links: LateLinks

    async def forget_user(self, user_id: int) -> int: ...


def context(interaction: discord.Interaction) -> BotContext:
    """The bot that received ``interaction`` (always a MoodringBot in this process)."""
    return cast(BotContext, interaction.client)
