"""`/session …`: group listening sessions; the logic is in bot.sessions and bot.board."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import embeds, texts, views
from bot.sessions import SessionError

if TYPE_CHECKING:
    from bot.app import MoodringBot

log = logging.getLogger(__name__)


@app_commands.guild_only()
@app_commands.allowed_installs(guilds=True, users=False)  # a session needs the bot in the server
class Session(commands.GroupCog, group_name="session", group_description="Group listening sessions"):
    def __init__(self, bot: MoodringBot) -> None:
        self.bot = bot
        self.sessions = bot.services.sessions

    @app_commands.command(name="start", description="Start a listening session in this channel")
    @app_commands.describe(
        strategy="match the room's mood, lift it, or calm it", length="tracks in the queue"
    )
    async def start(
        self,
        interaction: discord.Interaction,
        strategy: Literal["match", "lift", "calm"] = "lift",
        length: app_commands.Range[int, 3, 20] = 10,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel_id = interaction.channel_id
        channel = interaction.channel
        if channel_id is None or not isinstance(channel, discord.abc.Messageable):
            await interaction.followup.send(texts.error("internal"), ephemeral=True)
            return
        try:
            view = await self.sessions.start(channel_id, interaction.user.id, strategy, length)
        except SessionError as exc:
            await interaction.followup.send(texts.session_error(exc.code), ephemeral=True)
            return
        message = await channel.send(embed=embeds.session_embed(view), view=views.session_view(channel_id))
        await self.sessions.set_message(channel_id, message.id)
        log.info("session started in channel %s (guild %s)", channel_id, interaction.guild_id)
        await interaction.followup.send(texts.SESSION_STARTED, ephemeral=True)

    @app_commands.command(name="join", description="Join this channel's listening session")
    @app_commands.describe(reuse_latest="count your latest /mood reading instead of checking in again")
    async def join(self, interaction: discord.Interaction, reuse_latest: bool = False) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel_id = interaction.channel_id or 0
        text = await self.bot.board.act(channel_id, "join", interaction.user.id)
        if reuse_latest and text in (texts.SESSION_JOINED, texts.SESSION_ALREADY):
            text = await self._reuse_latest(channel_id, interaction.user.id)
        await interaction.followup.send(text, ephemeral=True)

    async def _reuse_latest(self, channel_id: int, user_id: int) -> str:
        store = self.bot.services.store
        latest = await store.history(user_id, limit=1) if await store.consent(user_id) else []
        if not latest:
            return texts.SESSION_NO_LATEST
        entry = latest[0]
        view = await self.sessions.check_in(channel_id, user_id, [entry.probs])
        await self.bot.board.refresh(channel_id, view.message_id)
        return texts.SESSION_JOINED_REUSED.format(emotion=entry.corrected or entry.emotion)

    @app_commands.command(name="leave", description="Leave this channel's listening session")
    async def leave(self, interaction: discord.Interaction) -> None:
        await self._act(interaction, "leave")

    @app_commands.command(name="skip", description="Vote to skip the current track (the host skips at once)")
    async def skip(self, interaction: discord.Interaction) -> None:
        await self._act(interaction, "skip")

    @app_commands.command(name="end", description="End this channel's session (host or Manage Channels)")
    async def end(self, interaction: discord.Interaction) -> None:
        await self._act(interaction, "end")

    @app_commands.command(name="status", description="The session's group mood and queue")
    async def status(self, interaction: discord.Interaction) -> None:
        try:
            view = await self.sessions.view(interaction.channel_id or 0)
        except SessionError as exc:
            await interaction.response.send_message(texts.session_error(exc.code), ephemeral=True)
            return
        await interaction.response.send_message(embed=embeds.session_embed(view), ephemeral=True)

    async def _act(self, interaction: discord.Interaction, action: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await self.bot.board.act(
            interaction.channel_id or 0,
            action,
            interaction.user.id,
            can_manage=interaction.permissions.manage_channels,
        )
        await interaction.followup.send(text, ephemeral=True)


async def setup(bot: MoodringBot) -> None:  # type: ignore[misc]
    await bot.add_cog(Session(bot))
