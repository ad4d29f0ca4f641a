"""The bot object: one async init point (``setup_hook``), collaborators passed in from the root."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands
from redis.exceptions import RedisError

from bot import gate, texts, views
from bot.board import EditCoalescer, SessionBoard
from bot.disk_forget import TICK_S
from bot.i18n import TableTranslator, load_tables
from bot.late_links import LateLinks
from bot.metrics import REFRESH_S
from bot.mood_flow import CheckOutcome, finish_check
from bot.recovery import OpenCheck
from bot.services import Services
from bot.tasks import TaskGroup
from bot.views import DYNAMIC_ITEMS, session_view
from inference.api.errors import MoodringError

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("bot.cogs.mood", "bot.cogs.session", "bot.cogs.server")


def intents(watch_channels: bool) -> discord.Intents:
    """The default intents; selfie channels add the privileged Message Content intent."""
    chosen = discord.Intents.default()
    chosen.message_content = watch_channels
    return chosen


def use_api_base(base: str | None) -> None:
    """Send REST calls to ``base`` (a rate-limit proxy, or the tests' fake Discord)."""
    if base:
        discord.http.Route.BASE = base.rstrip("/")


class GatedTree(app_commands.CommandTree["MoodringBot"]):
    """Every slash command and context menu first asks the server switch (:mod:`bot.gate`)."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        metrics = self.client.services.metrics
        metrics.started(interaction)
        name = interaction.command.qualified_name if interaction.command else ""
        allowed = await gate.allowed(interaction, self.client.services.guilds, gate.command_feature(name))
        if not allowed:
            metrics.finished(interaction, name, "refused")
        return allowed


class MoodringBot(commands.AutoShardedBot):
    """Slash-command bot; all shared state in Redis. No privileged intents unless selfie channels
    are on (``MOODRING_WATCH_CHANNELS``: Message Content)."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(settings.watch_channels),
            shard_count=settings.shard_count,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=GatedTree,
            http_trace=services.metrics.http_trace(),
        )
        self.services = services
        self._adopting: asyncio.Task[None] | None = None
        self._compacting: asyncio.Task[None] | None = None
        self._measuring: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._orphans = TaskGroup("finishing an orphaned check")
        self.late_links = LateLinks(services.recommender)
        self.board = SessionBoard(self, services.sessions, EditCoalescer(services.redis), session_view)
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        await self.tree.set_translator(TableTranslator(load_tables()))
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.services.ledger.beat()
        self._adopting = asyncio.create_task(self._adopt_loop(), name="adopt orphaned checks")
        self._compacting = asyncio.create_task(self._compact_loop(), name="rewrites owed after forgets")
        if self.services.recommender.links is not None and self.services.settings.warm_links:
            self._warming = asyncio.create_task(self._warm_loop(), name="warm track links")
        if self.services.settings.bot_metrics_port is not None:
            self._measuring = asyncio.create_task(self._metrics_loop(), name="system gauges")
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
        await self.services.pending.drop_for(user_id)
        deleted = left + await self.services.store.forget(user_id)
        try:  # the deletions are done; the rewrite that takes them off the disk is owed
            await self.services.disk_forget.forgotten()
        except RedisError:
            log.warning("could not mark the rewrite owed after a forget (redis); the next forget will")
        return deleted

    async def close(self) -> None:
        self.board.coalescer.cancel()
        self.late_links.tasks.cancel()
        self._orphans.cancel()
        for task in (self._adopting, self._compacting, self._measuring, self._warming):
            if task is not None:
                task.cancel()
        await super().close()

    async def _adopt_loop(self, every_s: float = 2.0) -> None:
        """Beat, and finish the checks of bot processes that stopped (``bot.recovery``)."""
        while True:
            try:
                await self.services.ledger.beat()
                for check in await self.services.ledger.adopt():
                    self._orphans.start(self._finish_orphan(check), name=f"orphan {check.job_id}")
            except RedisError:
                log.warning("could not look for orphaned checks (redis); trying again", exc_info=True)
            await asyncio.sleep(every_s)

    async def _warm_loop(self, every_s: float = 3_600.0) -> None:
        """Keep the built-in catalog's track links cached (a day each; looked at every hour)."""
        links = self.services.recommender.links
        assert links is not None
        tracks = [t for c in self.services.recommender.catalogs for t in getattr(c, "tracks", ())[:5_000]]
        while True:
            try:
                looked_up = await links.warm(tracks)
                log.info("warmed the links of %d tracks", looked_up)
            except RedisError as exc:
                log.warning("could not warm the track links (redis: %s); trying again in an hour", exc)
            await asyncio.sleep(every_s)

    async def _metrics_loop(self) -> None:
        """Refresh the system gauges (workers, dead letters, Redis memory and persistence)."""
        s = self.services
        while True:
            try:
                await s.metrics.refresh(s.queue, s.settings.worker_alive_s, s.redis, s.blobs)
            except RedisError as exc:
                log.warning("could not read the system gauges (redis: %s); trying again", exc)
            await asyncio.sleep(REFRESH_S)

    async def on_app_command_completion(
        self,
        interaction: discord.Interaction,
        command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu,
    ) -> None:
        self.services.metrics.finished(interaction, command.qualified_name, "ok")

    async def _compact_loop(self) -> None:
        """Start the Redis rewrite a forget owes once its interval allows (``bot.disk_forget``)."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self.services.disk_forget.compact()
            except RedisError:
                log.warning("could not look for a rewrite owed after a forget (redis); trying again")

    async def _finish_orphan(self, check: OpenCheck) -> None:
        """Wait for the worker's answer to a check another process started, and reply to it."""
        s = self.services
        try:
            result = await s.analyzer.resume(check.user_id, check.job_id, check.deadline - time.time() + 2)
            out = await finish_check(
                check.user_id,
                result,
                store=s.store,
                recommender=s.recommender,
                strategy=check.strategy,  # type: ignore[arg-type]
            )
        except MoodringError as exc:
            await s.store.release_cooldown(check.user_id)
            out = CheckOutcome(error="restarted" if exc.code == "timeout" else exc.code)
        reply = views.reply_for(s, check.user_id, out, v2=False)  # an edit of a plain deferred reply
        files = reply.pop("files", [])
        webhook = discord.Webhook.partial(check.application_id, check.token, client=self)
        # "@original": the interaction's first response, addressable with the token alone
        await webhook.edit_message("@original", attachments=files, **reply)  # type: ignore[call-overload]
        log.info(
            "finished check %s of user %s after its bot process stopped",
            check.job_id,
            s.store.hash(check.user_id),
        )

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """The one catch-all: log with the stack, tell the user something went wrong."""
        name = interaction.command.qualified_name if interaction.command else "?"
        log.error("command %s failed", name, exc_info=error)
        self.services.metrics.finished(interaction, name, "error")
        self.services.metrics.error(getattr(error, "original", error))
        try:
            if interaction.response.is_done():
                await interaction.followup.send(texts.error("internal"), ephemeral=True)
            else:
                await interaction.response.send_message(texts.error("internal"), ephemeral=True)
        except discord.HTTPException:
            log.warning("could not report the failure of %s to the user", name)
