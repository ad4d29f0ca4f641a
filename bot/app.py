"""The bot object: one async init point (``setup_hook``), collaborators passed in from the root."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import texts
from bot.board import EditCoalescer, SessionBoard
from bot.services import Services
from bot.views import DYNAMIC_ITEMS, session_view

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("bot.cogs.mood", "bot.cogs.session")


def use_api_base(base: str | None) -> None:
    """Send REST calls to ``base`` (a rate-limit proxy, or the tests' fake Discord)."""
    if base:
        discord.http.Route.BASE = base.rstrip("/")


class MoodringBot(commands.AutoShardedBot):
    """Slash-command bot; no privileged intents, all shared state in Redis."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            shard_count=settings.shard_count,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.services = services
        self.board = SessionBoard(self, services.sessions, EditCoalescer(services.redis), session_view)
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        guild_id = self.services.settings.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to dev guild %s", len(synced), guild_id)

    async def process_commands(self, message: discord.Message) -> None:
        """moodring has no prefix commands: a mention with text is not a command (nor an error)."""

    async def on_ready(self) -> None:
        log.info("ready as %s in %d guilds (%s shards)", self.user, len(self.guilds), self.shard_count)

    async def forget_user(self, user_id: int) -> int:
        """Leave every session (host passes on), then delete everything stored about the user.

        Returns what was deleted: stored records plus session memberships.
        """
        left = 0
        for channel_id in await self.services.sessions.sessions_of(user_id):
            if await self.services.sessions.exists(channel_id):
                left += int(await self.services.sessions.is_member(channel_id, user_id))
                await self.board.act(channel_id, "leave", user_id)
        return left + await self.services.store.forget(user_id)

    async def close(self) -> None:
        self.board.coalescer.cancel()
        await super().close()

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """The one catch-all: log with the stack, tell the user something went wrong."""
        name = interaction.command.qualified_name if interaction.command else "?"
        log.error("command %s failed", name, exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(texts.error("internal"), ephemeral=True)
            else:
                await interaction.response.send_message(texts.error("internal"), ephemeral=True)
        except discord.HTTPException:
            log.warning("could not report the failure of %s to the user", name)
