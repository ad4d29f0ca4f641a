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


async def setup(bot: MoodringBot) -> None:  # type: ignore[misc]
    await bot.add_cog(Server(bot))
