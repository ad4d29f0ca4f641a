"""The bot object: one async init point (``setup_hook``), resources passed in from the root."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands
from redis.asyncio import Redis

from bot.settings import BotSettings

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("bot.cogs.meta",)


class MoodringBot(commands.AutoShardedBot):
    """Slash-command bot; no privileged intents, all shared state in Redis."""

    def __init__(self, settings: BotSettings, redis: Redis) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            shard_count=settings.shard_count,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.settings = settings
        self.redis = redis

    async def setup_hook(self) -> None:
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to dev guild %s", len(synced), self.settings.dev_guild_id)

    async def on_ready(self) -> None:
        log.info("ready as %s in %d guilds (%s shards)", self.user, len(self.guilds), self.shard_count)
