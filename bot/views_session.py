"""Join / Leave / Skip / End on a group session's board; any bot process can handle a click."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.context import context
from bot.views_common import measured, switched_on

SESSION_LABELS = {"join": "Join", "leave": "Leave", "skip": "Skip", "end": "End"}


class SessionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mr:sess:(?P<channel>\d+):(?P<action>join|leave|skip|end)",
):
    """Join/Leave/Skip/End on a session message; any bot process can handle it."""

    def __init__(self, channel_id: int, action: str) -> None:
        style = discord.ButtonStyle.danger if action == "end" else discord.ButtonStyle.secondary
        if action == "join":
            style = discord.ButtonStyle.success
        super().__init__(
            discord.ui.Button(
                label=SESSION_LABELS[action], style=style, custom_id=f"mr:sess:{channel_id}:{action}"
            )
        )
        self.channel_id, self.action = channel_id, action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> SessionButton:
        return cls(int(match["channel"]), match["action"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await switched_on(interaction, self.custom_id)

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await context(interaction).board.act(
            self.channel_id,
            self.action,
            interaction.user.id,
            can_manage=interaction.permissions.manage_channels,
            message_id=interaction.message.id if interaction.message else None,
        )
        await interaction.followup.send(text, ephemeral=True)


def session_view(channel_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in SESSION_LABELS:
        view.add_item(SessionButton(channel_id, action))
    return view
