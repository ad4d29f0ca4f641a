"""Join / Leave / Skip / End on a group session's board; any bot process can handle a click."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot import embeds, texts
from bot.context import context
from bot.services import Services
from bot.sessions import SessionError
from bot.views_common import Persistent, measured, switched_on
from recommender.tracks import Track

SESSION_LABELS = {"listen": "Listen", "join": "Join", "leave": "Leave", "skip": "Skip", "end": "End"}


class SessionButton(
    Persistent,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mr:sess:(?P<channel>\d+):(?P<action>listen|join|leave|skip|end)",
):
    """Join/Leave/Skip/End on a session message; any bot process can handle it."""

    def __init__(self, channel_id: int, action: str) -> None:
        style = discord.ButtonStyle.danger if action == "end" else discord.ButtonStyle.secondary
        if action == "join":
            style = discord.ButtonStyle.success
        if action == "listen":
            style = discord.ButtonStyle.primary
        super().__init__(
            discord.ui.Button(
                label=SESSION_LABELS[action], style=style, custom_id=f"mr:sess:{channel_id}:{action}"
            )
        )
        self.channel_id, self.action = channel_id, action

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return int(m["channel"]), m["action"]

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await switched_on(interaction, self.custom_id)

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.action == "listen":  # the shared queue, on this member's own platform
            text = await listen_text(context(interaction).services, self.channel_id, interaction.user.id)
            await interaction.followup.send(text, ephemeral=True)
            return
        text = await context(interaction).board.act(
            self.channel_id,
            self.action,
            interaction.user.id,
            can_manage=interaction.permissions.manage_channels,
            message_id=interaction.message.id if interaction.message else None,
        )
        await interaction.followup.send(text, ephemeral=True)


async def listen_text(services: Services, channel_id: int, user_id: int) -> str:
    """The session's queue with each track on the member's platform (waits up to a second for
    exact links: the answer is deferred, so it can)."""
    try:
        view = await services.sessions.view(channel_id)
    except SessionError as exc:
        return texts.session_error(str(exc))
    if not view.queue:
        return texts.SESSION_QUEUE_EMPTY
    platform = await services.store.platform(user_id)
    tracks = [Track(t.title, t.artists, t.url, "session") for t in view.queue[:5]]
    linked = await services.recommender.link_tracks(tracks, platform, deadline_s=1.0)
    return embeds.listen_lines(linked, platform)[:2000]


def session_view(channel_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in SESSION_LABELS:
        view.add_item(SessionButton(channel_id, action))
    return view
