"""Informational commands."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import texts


class Meta(commands.Cog):
    """`/privacy`: what moodring processes and keeps."""

    @app_commands.command(name="privacy", description="What moodring does with your photos and data")
    async def privacy(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(texts.PRIVACY, ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Meta())
