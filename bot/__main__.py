"""Composition root of the bot process: ``python -m bot`` or ``moodring bot``."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from bot.settings import BotSettings
from inference.config import load_settings
from inference.logsetup import configure_logging

log = logging.getLogger("bot")


async def run(settings: BotSettings) -> None:
    """Open Redis, build the bot, run until SIGTERM/SIGINT, close everything."""
    import discord
    from redis.asyncio import Redis

    from bot.app import MoodringBot

    redis = Redis.from_url(settings.redis_url, decode_responses=False)
    try:
        async with MoodringBot(settings, redis) as bot:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
            try:
                await bot.start(settings.discord_token.get_secret_value())
            except discord.LoginFailure:
                log.error("Discord rejected MOODRING_DISCORD_TOKEN (login failed)")
                raise SystemExit(2) from None
    finally:
        await redis.aclose()


@click.command("bot")
@click.option("--sync-global", is_flag=True, help="Sync slash commands globally once, then exit.")
def bot_command(sync_global: bool) -> None:
    """Run the Discord bot (needs MOODRING_DISCORD_TOKEN)."""
    settings = load_settings(BotSettings)
    configure_logging(settings.log_level, settings.log_json)
    if sync_global:
        asyncio.run(_sync_global(settings))
        return
    asyncio.run(run(settings))


async def _sync_global(settings: BotSettings) -> None:
    from redis.asyncio import Redis

    from bot.app import MoodringBot

    redis = Redis.from_url(settings.redis_url)
    try:
        async with MoodringBot(settings, redis) as bot:
            await bot.login(settings.discord_token.get_secret_value())
            for ext in ("bot.cogs.meta",):
                await bot.load_extension(ext)
            synced = await bot.tree.sync()
            log.info("synced %d global commands", len(synced))
    finally:
        await redis.aclose()


def main() -> None:
    bot_command(prog_name="python -m bot")


if __name__ == "__main__":
    main()
