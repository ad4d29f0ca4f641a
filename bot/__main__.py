"""Composition root of the bot process: ``python -m bot`` or ``moodring bot``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

import click
from pydantic_settings import BaseSettings

from bot.settings import BotSettings
from inference.api.logsetup import configure_logging
from inference.api.settings import load_settings
from recommender.sources import load_source_settings

log = logging.getLogger("bot")


async def run(settings: BotSettings, sources: Mapping[str, BaseSettings], sync_global: bool = False) -> None:
    """Open Redis, wire the services, run the bot until SIGTERM/SIGINT, close everything."""
    import discord

    from bot import texts
    from bot.app import MoodringBot, use_api_base
    from bot.services import build_services
    from inference.api.connect import connect
    from inference.api.emotions import EmotionError
    from inference.api.transport import connect_blobs
    from recommender.links import LinkResolver
    from recommender.mood import MoodMapError
    from recommender.sources import build_link_sources

    use_api_base(settings.discord_api_base)
    redis = connect(settings.redis_url, settings.redis_cluster)
    blobs = connect_blobs(settings)  # photos and heatmaps only; a Redis without persistence
    try:
        try:
            services = build_services(settings, sources, redis, blobs=blobs)
            # after the services: a bad mood map stops start-up before any source is built
            services.recommender.links = LinkResolver(
                build_link_sources(sources, redis, settings.redis_url), redis
            )
        except (MoodMapError, EmotionError) as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None
        if settings.bot_metrics_port is not None:
            services.metrics.serve(settings.bot_metrics_port)
        async with MoodringBot(services) as bot:
            if sync_global:
                await bot.login(settings.discord_token.get_secret_value())
                synced = await bot.tree.sync()
                log.info("synced %d global commands", len(synced))
                return
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
            try:
                await bot.start(settings.discord_token.get_secret_value())
            except discord.LoginFailure:
                log.error("Discord rejected MOODRING_DISCORD_TOKEN (login failed)")
                raise SystemExit(2) from None
            except discord.PrivilegedIntentsRequired:
                log.error(texts.MESSAGE_CONTENT_MISSING)
                raise SystemExit(2) from None
    finally:
        await redis.aclose()
        if blobs is not None:
            await blobs.aclose()


@click.command("bot")
@click.option("--sync-global", is_flag=True, help="Sync slash commands globally once, then exit.")
def bot_command(sync_global: bool) -> None:
    """Run the Discord bot (needs MOODRING_DISCORD_TOKEN)."""
    settings = load_settings(BotSettings)
    sources = load_source_settings(load_settings)
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(run(settings, sources, sync_global))


def main() -> None:
    bot_command(prog_name="python -m bot")


if __name__ == "__main__":
    main()
