"""`/mood …` and the "Read mood" context menu: thin handlers over mood_flow, store and embeds."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot import embeds, gate, texts, views
from bot.chart import mood_chart
from bot.disk_forget import bound_s
from bot.mood_flow import (
    BaselineOutcome,
    CheckOutcome,
    attachment_problem,
    check_mood,
    set_calm_face,
)
from bot.recovery import OpenCheck
from bot.store import DAY, NoConsent, summarize
from recommender.platforms import CHOICES, LABELS

if TYPE_CHECKING:
    from bot.app import MoodringBot

log = logging.getLogger(__name__)
T = TypeVar("T")

StrategyChoice = Literal["match", "lift", "calm"]


# Installable to a server and to a user's own account; usable in servers, DMs with the bot and
# group DMs (discord.py 2.4+). A user install works where the bot isn't a member: the replies
# go through the interaction's webhook, ephemeral, at most 2 follow-ups (Discord allows 5).
# The "Read mood" context menu takes the same from the group these decorators make.
@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class Mood(commands.GroupCog, group_name="mood", group_description="Read the mood of a selfie"):
    def __init__(self, bot: MoodringBot) -> None:
        self.bot = bot
        self.services = bot.services
        self._slots = asyncio.Semaphore(bot.services.settings.max_concurrent_checks)
        group = self.app_command  # made from the class's decorators (a GroupCog always has one)
        if group is None:
            raise RuntimeError("the mood cog has no command group")
        self._menu = app_commands.ContextMenu(
            name="Read mood",
            callback=self.read_mood,
            allowed_installs=group.allowed_installs,
            allowed_contexts=group.allowed_contexts,
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self._menu.name, type=self._menu.type)

    # commands --------------------------------------------------------------------------
    @app_commands.command(name="check", description="Read the emotion on a selfie and get music for it")
    @app_commands.describe(photo="A photo with your face", strategy="match the mood, lift it, or calm it")
    async def check(
        self,
        interaction: discord.Interaction,
        photo: discord.Attachment,
        strategy: StrategyChoice | None = None,
    ) -> None:
        await self.run_check(interaction, photo, strategy)

    async def read_mood(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu on a message: read the first image attached to it, only the poster's own."""
        if message.author.bot or message.author.id != interaction.user.id:
            await interaction.response.send_message(texts.NOT_YOUR_PHOTO, ephemeral=True)
            return
        photo = next(
            (a for a in message.attachments if (a.content_type or "").startswith("image/")),
            message.attachments[0] if message.attachments else None,
        )
        await self.run_check(interaction, photo, None)

    @app_commands.command(name="history", description="Your recent moods, with a chart")
    @app_commands.describe(days="How far back to look")
    async def history(self, interaction: discord.Interaction, days: Literal[7, 30] = 7) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        store = self.services.store
        entries = await store.history(interaction.user.id, days=days)
        week_start = time.time() - 7 * DAY
        week = summarize([e for e in entries if e.at >= week_start], 7)  # days is 7 or 30
        emotions = self.services.emotions
        chart = await asyncio.to_thread(mood_chart, entries, days, emotions) if entries else None
        embed, files = embeds.history_embed(entries, week, days, chart, emotions)
        await interaction.followup.send(embed=embed, files=files, ephemeral=True)

    baseline = app_commands.Group(name="baseline", description="Your calm face: photos read relative to it")

    @baseline.command(name="set", description="Show me your calm face: a relaxed, neutral selfie")
    @app_commands.describe(photo="A relaxed selfie, your face at rest")
    async def baseline_set(self, interaction: discord.Interaction, photo: discord.Attachment) -> None:
        refusal = self._refusal(photo)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        user_id = interaction.user.id
        out = await self._capped(BaselineOutcome(error="busy"), set_calm_face, user_id, photo)
        log.info("calm face by %s: %s", self.services.store.hash(user_id), out.error or out.reads_as)
        if out.error or out.saved is None:
            reply = views.error_reply(self.services, user_id, out.error or "internal", out.retry_after_s)
            await interaction.followup.send(**reply, ephemeral=True)
        else:
            text = embeds.baseline_text(out.saved, self.services.emotions)
            await interaction.followup.send(text, ephemeral=True)

    @baseline.command(name="show", description="What moodring keeps of your calm face")
    async def baseline_show(self, interaction: discord.Interaction) -> None:
        saved = await self.services.store.baseline(interaction.user.id)
        if saved is None:
            await interaction.response.send_message(texts.BASELINE_NONE, ephemeral=True)
            return
        probs: dict[str, float] = saved["probs"]
        top = self.services.emotions[max(probs, key=probs.__getitem__)]
        text = texts.BASELINE_SHOW.format(
            photos=saved["photos"], at=int(saved["at"]), adjective=top.adjective
        )
        await interaction.response.send_message(text, ephemeral=True)

    @baseline.command(name="clear", description="Forget your calm face")
    async def baseline_clear(self, interaction: discord.Interaction) -> None:
        gone = await self.services.store.clear_baseline(interaction.user.id)
        await interaction.response.send_message(
            texts.BASELINE_CLEARED if gone else texts.BASELINE_NONE, ephemeral=True
        )

    @app_commands.command(name="export", description="Download everything moodring stores about you")
    async def export(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await self.services.store.export(interaction.user.id)
        data["sessions"] = await self.services.sessions.sessions_of(interaction.user.id)
        await interaction.followup.send(file=views.export_file(data), ephemeral=True)

    @app_commands.command(name="forget", description="Delete everything moodring stores about you")
    async def forget(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            texts.FORGET_CONFIRM, view=views.forget_view(interaction.user.id), ephemeral=True
        )

    @app_commands.command(name="music", description="Where your Listen links open")
    @app_commands.describe(platform="Your music app, or: ask every time")
    @app_commands.choices(platform=[app_commands.Choice(name=LABELS[c], value=c) for c in CHOICES])
    async def music(
        self, interaction: discord.Interaction, platform: app_commands.Choice[str] | None = None
    ) -> None:
        store, user_id = self.services.store, interaction.user.id
        if platform is None:
            current = LABELS[await store.platform(user_id)]
            await interaction.response.send_message(texts.MUSIC_NOW.format(platform=current), ephemeral=True)
            return
        choice = next(c for c in CHOICES if c == platform.value)
        try:
            await store.set_platform(user_id, choice)
        except NoConsent:  # kept like the rest of what moodring remembers: only with consent
            reply = views.error_reply(self.services, user_id, "consent_needed")
            await interaction.response.send_message(**reply, ephemeral=True)
            return
        said = texts.MUSIC_ASK if choice == "ask" else texts.MUSIC_SET.format(platform=LABELS[choice])
        await interaction.response.send_message(said, ephemeral=True)

    @app_commands.command(name="privacy", description="What moodring does with your photos and data")
    async def privacy(self, interaction: discord.Interaction) -> None:
        settings, store = self.services.settings, self.services.store
        user_id = interaction.user.id
        contributing = await store.contributing(user_id)
        given = len((await store.contributions(user_id))["labelled_readings"]) if contributing else 0
        text = texts.privacy(
            settings.retention_days,
            settings.adapt_min_people,
            texts.duration(settings.adapt_withdrawn_s),
            contributing,
            given,
            texts.duration(bound_s(settings.forget_rewrite_s)),
        )
        view = views.privacy_view(user_id, contributing)
        await interaction.response.send_message(text, view=view, ephemeral=True)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A photo sent by DM, or in a message that mentions the bot: answer by DM.

        Discord delivers attachments of these two kinds of messages without the privileged
        message-content intent. The answer goes to the author's DMs, never to the channel,
        because a heatmap of a face is personal.
        """
        me = self.bot.user
        if message.author.bot or me is None:
            return
        photo = next((a for a in message.attachments if (a.content_type or "").startswith("image/")), None)
        if photo is None:
            return
        # an uncached server's channel is a PartialMessageable that still knows its guild id
        guild_id = message.guild.id if message.guild else getattr(message.channel, "guild_id", None)
        mentioned = me.mentioned_in(message)
        if guild_id is not None and not mentioned and self.services.settings.watch_channels:
            if await self.services.guilds.is_watched(guild_id, message.channel.id):
                await self._read_watched(message, photo, guild_id)
            return
        if not isinstance(message.channel, discord.DMChannel) and not mentioned:
            return
        switched_off = await gate.refusal(self.services.guilds, guild_id, "core")
        if switched_off:  # one line in the channel, nothing read
            await message.channel.send(switched_off)
            return
        if not isinstance(message.channel, discord.DMChannel):
            # Make sure the reading can reach the author's DMs before reading anything: with
            # DMs closed nothing is analysed or stored, and the channel gets one line, no reading.
            try:
                await message.author.send(texts.READING_YOUR_PHOTO)
            except discord.Forbidden:
                await message.channel.send(texts.DMS_CLOSED.format(mention=message.author.mention))
                return
        refusal = self._refusal(photo)
        if refusal:
            await message.author.send(refusal)
            return
        out = await self._analyse(message.author.id, photo, None)
        await message.author.send(**self._reply(message.author.id, out, share=False))

    async def _read_watched(self, message: discord.Message, photo: discord.Attachment, guild_id: int) -> None:
        """A photo posted in a selfie channel: a reading as a reply, for members who consented.

        Anyone else gets one short consent prompt (its Accept reads this photo, privately) and
        nothing is analysed. A server that switched moodring or selfie channels off gets silence.
        """
        server = await self.services.guilds.get(guild_id)
        if gate.why_not(server, "watch"):
            return
        user_id = message.author.id
        if not await self.services.store.consent(user_id):
            self.services.metrics.check("consent_needed")
            token = await self.services.pending.hold(user_id, photo.url, None)
            await message.reply(
                texts.WATCH_CONSENT.format(mention=message.author.mention),
                view=views.consent_view(user_id, pending=token),
                mention_author=False,
            )
            return
        refusal = self._refusal(photo)
        if refusal:
            await message.reply(refusal, mention_author=False)
            return
        out = await self._analyse(user_id, photo, server.strategy)  # type: ignore[arg-type]
        # already public: no Share button; the correction and calm-face buttons stay owner-only
        await message.reply(**self._reply(user_id, out, share=False), mention_author=False)

    # the check flow ----------------------------------------------------------------------
    async def run_check(
        self,
        interaction: discord.Interaction,
        photo: discord.Attachment | None,
        strategy: StrategyChoice | None,
    ) -> None:
        refusal = self._refusal(photo)
        if refusal or photo is None:
            await interaction.response.send_message(refusal or texts.error("no_image"), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if strategy is None and interaction.guild_id is not None:  # the server's default, if it set one
            server = await gate.server_settings(interaction, self.services.guilds)  # read by the gate already
            strategy = server.strategy  # type: ignore[assignment]
        # In the ledger until answered: if this process dies meanwhile, another one finishes it.
        job_id = uuid.uuid4().hex
        ledger = self.services.ledger
        deadline = time.time() + self.services.settings.job_timeout_s + 5
        check = OpenCheck(
            job_id, interaction.application_id, interaction.token, interaction.user.id, strategy, deadline
        )
        await ledger.open(check)
        try:
            out = await self._analyse(interaction.user.id, photo, strategy, job_id=job_id)
            # "Share to channel" only where the bot is in the server (not in DMs, group DMs, or
            # servers where only the user installed moodring)
            reply = self._reply(interaction.user.id, out, share=views.server_installed(interaction))
            if out.error == "consent_needed":  # Accept will read this photo: no re-upload
                token = await self.services.pending.hold(interaction.user.id, photo.url, strategy)
                reply["view"] = views.consent_view(interaction.user.id, pending=token)
            sent = await interaction.followup.send(**reply, ephemeral=True)
            views.follow_links(
                interaction, sent, interaction.user.id, out, share=views.server_installed(interaction)
            )
        finally:
            # cancelled (shutting down): it stays in the ledger and another process finishes it
            if not _cancelling():
                await ledger.close(job_id)
        if out.error is None:
            await self._check_in(interaction, out)

    def _refusal(self, photo: discord.Attachment | None) -> str | None:
        """What to say when the attachment can't be a usable photo (decided before download)."""
        max_bytes = self.services.settings.max_photo_bytes
        problem = attachment_problem(
            None if photo is None else photo.content_type, None if photo is None else photo.size, max_bytes
        )
        return texts.error(problem, max_mb=max_bytes / 2**20) if problem else None

    async def _analyse(
        self,
        user_id: int,
        photo: discord.Attachment,
        strategy: StrategyChoice | None,
        job_id: str | None = None,
    ) -> CheckOutcome:
        """Download (only if consent and cooldown allow) and run the check, within this process's cap."""
        services = self.services
        out = await self._capped(
            CheckOutcome(error="busy"),
            check_mood,
            user_id,
            photo,
            recommender=services.recommender,
            strategy=strategy,
            job_id=job_id,
        )
        log.info("check by %s: %s", self.services.store.hash(user_id), out.error or out.emotion)
        self.services.metrics.check(out.error)
        return out

    async def _capped(
        self, busy: T, flow: Callable[..., Awaitable[T]], user_id: int, photo: discord.Attachment, **more: Any
    ) -> T:
        """Run a photo flow (:mod:`bot.mood_flow`: it downloads only if consent and cooldown allow)
        within this process's cap of photos in flight, or answer ``busy`` at once."""
        if self._slots.locked():
            return busy
        services = self.services
        async with self._slots:
            return await flow(
                user_id,
                views.downloader(photo.read),
                store=services.store,
                analyzer=services.analyzer,
                cooldown_s=services.settings.cooldown_s,
                **more,
            )

    def _reply(self, user_id: int, out: CheckOutcome, share: bool = True) -> dict[str, Any]:
        return views.reply_for(self.services, user_id, out, share)

    async def _check_in(self, interaction: discord.Interaction, out: CheckOutcome) -> None:
        """A member of this channel's session adds the reading (every face) to the group mood."""
        sessions = self.services.sessions
        channel_id = interaction.channel_id
        if channel_id is None or not await sessions.is_member(channel_id, interaction.user.id):
            return
        faces = [out.probs or out.faces[0].probs, *(f.probs for f in out.faces[1:])]
        view = await sessions.check_in(channel_id, interaction.user.id, faces)
        await self.bot.board.refresh(channel_id, view.message_id)
        await interaction.followup.send(texts.SESSION_CHECKED_IN, ephemeral=True)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def setup(bot: MoodringBot) -> None:  # type: ignore[misc]
    await bot.add_cog(Mood(bot))
