"""`/moodring server` and `/moodring watch`: per-server controls for admins (Manage Server)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import texts

if TYPE_CHECKING:
    from bot.app import MoodringBot

log = logging.getLogger(__name__)


@app_commands.guild_only()
@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.default_permissions(manage_guild=True)
class Server(
    commands.GroupCog, group_name="moodring", group_description="moodring's settings for this server"
):
    def __init__(self, bot: MoodringBot) -> None:
        self.bot = bot
        self.guilds = bot.services.guilds

    async def _admin(self, interaction: discord.Interaction) -> int | None:
        """The guild id when the caller may change settings (Manage Server), else None (told why)."""
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            await interaction.response.send_message(texts.NEEDS_MANAGE_SERVER, ephemeral=True)
            return None
        return interaction.guild_id

    @app_commands.command(
        name="server", description="Turn moodring, its sessions or selfie channels on or off here"
    )
    @app_commands.describe(
        enabled="moodring in this server at all (off: for workplaces and schools, see /mood privacy)",
        sessions="group listening sessions",
        selfie_channels="readings of photos posted in watched channels",
        strategy="the music strategy when a member picks none",
    )
    async def server(
        self,
        interaction: discord.Interaction,
        enabled: bool | None = None,
        sessions: bool | None = None,
        selfie_channels: bool | None = None,
        strategy: Literal["match", "lift", "calm", "none"] | None = None,
    ) -> None:
        guild_id = await self._admin(interaction)
        if guild_id is None:
            return
        settings = await self.guilds.update(
            guild_id, enabled=enabled, sessions=sessions, watch=selfie_channels, strategy=strategy
        )
        log.info("server settings of guild %s changed: %s", guild_id, settings)
        await interaction.response.send_message(texts.server_settings(settings), ephemeral=True)

    @app_commands.command(name="watch", description="Make a channel a selfie channel (or stop)")
    @app_commands.describe(channel="the selfie channel", on="start watching it (default) or stop")
    async def watch(
        self, interaction: discord.Interaction, channel: discord.TextChannel, on: bool = True
    ) -> None:
        guild_id = await self._admin(interaction)
        if guild_id is None:
            return
        if not self.bot.services.settings.watch_channels:
            await interaction.response.send_message(texts.WATCH_NEEDS_OPERATOR, ephemeral=True)
            return
        await self.guilds.watch_channel(guild_id, channel.id, on)
        log.info("guild %s %s channel %s", guild_id, "watches" if on else "stopped watching", channel.id)
        text = texts.WATCH_ON if on else texts.WATCH_OFF_CHANNEL
        await interaction.response.send_message(text.format(channel=channel.mention), ephemeral=True)


async def setup(bot: MoodringBot) -> None:  # type: ignore[misc]
    await bot.add_cog(Server(bot))
