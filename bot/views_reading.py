"""The components of a reading: Spot on / Yes / No, Share, "Use this as my calm face", the
correction select, and the reading's layouts (Components V2, or an embed with buttons)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot import embeds, texts
from bot.context import context
from bot.mood_flow import CheckOutcome
from bot.store import Labelled, NoConsent, ReadingGone
from bot.views_common import OwnerOnly, measured, server_installed
from inference.api.emotions import EmotionRegistry
from recommender.ranking import Recommendation

log = logging.getLogger(__name__)


async def labelled(
    interaction: discord.Interaction, write: Callable[[], Awaitable[Labelled]]
) -> Labelled | None:
    """Label a reading; when it can't be (consent withdrawn, the reading trimmed) say so and give None."""
    try:
        return await write()
    except NoConsent:  # an old reply after /mood forget or a decline: store nothing
        await interaction.followup.send(texts.FORGOTTEN, ephemeral=True)
    except ReadingGone:
        await interaction.followup.send(texts.READING_GONE, ephemeral=True)
    return None


class ShareButton(
    OwnerOnly, discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"mr:share:(?P<owner>\d+)"
):
    """Post the (ephemeral) reading publicly: same embed, heatmap re-read from the message."""

    def __init__(self, owner: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Share to channel",
                emoji="\N{SPEAKER WITH THREE SOUND WAVES}",
                custom_id=f"mr:share:{owner}",
            )
        )
        self.owner = owner

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return (int(m["owner"]),)

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None:  # a DM or group DM: there is no channel of a server to post to
            await interaction.response.send_message(texts.SHARE_ONLY_IN_SERVERS, ephemeral=True)
            return
        if not server_installed(interaction):  # a user install: the bot can't post to this server
            await interaction.response.send_message(texts.NEEDS_SERVER_INSTALL, ephemeral=True)
            return
        if not await context(interaction).services.store.consent(self.owner):
            # forgotten (or declined) since: the reading and its heatmap are not re-posted
            await interaction.response.send_message(texts.FORGOTTEN, ephemeral=True)
            return
        message = interaction.message
        await interaction.response.defer(thinking=True)
        v2 = message is not None and not message.embeds and message.flags.components_v2
        if message is None or not (v2 or message.embeds):
            await interaction.followup.send(texts.error("internal"), ephemeral=True)
            return
        heatmap = None  # re-read: the original attachment was only the owner's
        if message.attachments:
            try:
                heatmap = await message.attachments[0].read()
            except discord.HTTPException:
                log.info("heatmap of a shared reading could not be re-read; sharing without it")
        line = texts.SHARED.format(mention=interaction.user.mention)
        if v2:
            await interaction.followup.send(**public_copy(message, line, heatmap))
            return
        embed = message.embeds[0].copy()
        files = []
        if heatmap is not None:
            files.append(discord.File(io.BytesIO(heatmap), embeds.HEATMAP_NAME))
            embed.set_image(url=f"attachment://{embeds.HEATMAP_NAME}")
        elif message.attachments:  # it couldn't be re-read
            embed.set_image(url=None)
        await interaction.followup.send(line, embed=embed, files=files)


class CorrectSelect(
    OwnerOnly,
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"mr:fix:(?P<owner>\d+):(?P<entry>\d+-\d+)",
):
    """ "Not how I feel?": the correction updates the user's prior and re-ranks their music."""

    def __init__(self, owner: int, entry_id: str, emotions: EmotionRegistry) -> None:
        super().__init__(
            discord.ui.Select(
                placeholder="Not how I feel?",
                options=[discord.SelectOption(label=e.label, value=e.name, emoji=e.emoji) for e in emotions][
                    :25
                ],
                custom_id=f"mr:fix:{owner}:{entry_id}",
            )
        )
        self.owner, self.entry_id = owner, entry_id

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return int(m["owner"]), m["entry"], context(interaction).services.emotions

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        emotion = self.item.values[0]
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = context(interaction).services
        corrected = await labelled(
            interaction, lambda: services.store.correct(self.owner, self.entry_id, emotion)
        )
        if corrected is None:
            return
        platform = await services.store.platform(self.owner)
        tracks = await services.recommender.recommend(
            emotion, user=services.store.hash(self.owner), platform=platform
        )

        def render(picks: list[Recommendation]) -> dict[str, Any]:
            title = texts.CORRECTED.format(emotion=emotion)
            return {"embed": embeds.tracks_embed(picks, title=title), "view": link_view(picks)}

        sent = await interaction.followup.send(**render(tracks), ephemeral=True)
        context(interaction).late_links.follow(sent, tracks, platform, render)


class CalmButton(
    OwnerOnly,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mr:calm:(?P<owner>\d+):(?P<entry>\d+-\d+)",
):
    """ "Use this as my calm face": the reading's own probabilities join the user's baseline."""

    def __init__(self, owner: int, entry_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Use this as my calm face",
                emoji="\N{RELIEVED FACE}",
                custom_id=f"mr:calm:{owner}:{entry_id}",
            )
        )
        self.owner, self.entry_id = owner, entry_id

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return int(m["owner"]), m["entry"]

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = context(interaction).services
        store = services.store
        if not await store.consent(self.owner):  # forgotten or declined since: store nothing
            await interaction.followup.send(texts.FORGOTTEN, ephemeral=True)
            return
        entry = await store.entry(self.owner, self.entry_id)
        if entry is None:
            await interaction.followup.send(texts.BASELINE_GONE, ephemeral=True)
            return
        saved = await store.add_baseline(self.owner, entry.raw or entry.probs)
        await interaction.followup.send(embeds.baseline_text(saved, services.emotions), ephemeral=True)


# kind in the custom_id -> (label, emoji)
LABEL_BUTTONS: dict[str, tuple[str, str]] = {
    "ok": ("Spot on", "\N{DIRECT HIT}"),
    "yes": ("Yes", "\N{THUMBS UP SIGN}"),
    "no": ("No", "\N{THUMBS DOWN SIGN}"),
}


class LabelButton(
    OwnerOnly,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mr:(?P<kind>ok|yes|no):(?P<owner>\d+):(?P<entry>\d+-\d+)",
):
    """ "Spot on" under a reading, or the Yes / No of "Did I get it right?" on the random share of
    readings that ask: a label on the reading (one per reading; the last one counts)."""

    def __init__(self, kind: str, owner: int, entry_id: str) -> None:
        label, emoji = LABEL_BUTTONS[kind]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.success if kind == "ok" else discord.ButtonStyle.secondary,
                custom_id=f"mr:{kind}:{owner}:{entry_id}",
            )
        )
        self.kind, self.owner, self.entry_id = kind, owner, entry_id

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return m["kind"], int(m["owner"]), m["entry"]

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = context(interaction).services
        store = services.store

        async def label() -> Labelled:
            if not await store.consent(self.owner):
                raise NoConsent("no current consent")
            entry = await store.entry(self.owner, self.entry_id)
            if entry is None:
                raise ReadingGone(self.entry_id)
            return await store.label(self.owner, self.entry_id, None if self.kind == "no" else entry.emotion)

        done = await labelled(interaction, label)
        if done is None:
            return
        if self.kind == "no":  # which was it? the same select as "Not how I feel?"
            view = discord.ui.View(timeout=None)
            view.add_item(CorrectSelect(self.owner, self.entry_id, services.emotions))
            await interaction.followup.send(texts.ASK_WHICH, view=view, ephemeral=True)
            return
        text = texts.LABEL_THANKS if done.contributed else texts.LABEL_THANKS_PRIVATE
        await interaction.followup.send(text, ephemeral=True)


V2_MAX_COMPONENTS = 40  # Discord's limit for one Components V2 message


def reading_layout(
    out: CheckOutcome, emotions: EmotionRegistry, owner: int, share: bool
) -> tuple[discord.ui.LayoutView, list[discord.File]]:
    """The reading as Components V2: one container (the emotion's colour) with the headline, the
    top-3 bars and the reason, the heatmap in a media gallery, one section per track with a
    Listen link, then Share / calm face and the correction menu, and the AI notice."""
    assert out.faces and out.emotion is not None
    main = out.faces[0]
    info = emotions[out.emotion]
    parts: list[discord.ui.Item[Any]] = [
        discord.ui.TextDisplay(f"## {info.emoji} You look **{info.adjective}** ({main.confidence:.0%})"),
        discord.ui.TextDisplay(embeds.reading_body(out)),
    ]
    files = []
    if out.heatmap_jpeg:
        files.append(discord.File(io.BytesIO(out.heatmap_jpeg), embeds.HEATMAP_NAME))
        parts.append(_heatmap_gallery())
    if len(out.faces) > 1:
        parts.append(discord.ui.TextDisplay(embeds.faces_text(out)))
    if out.tracks:
        parts.append(discord.ui.Separator())
        parts.append(discord.ui.TextDisplay(f"**Music ({out.strategy})**"))
        for rec in out.tracks[:5]:
            line = f"**{rec.track.title}** — {', '.join(rec.track.artists)}\n-# {rec.reason}"
            extras = embeds.link_extras(rec.track)
            text: discord.ui.TextDisplay[Any] = discord.ui.TextDisplay(
                line + (f"\n{extras}" if extras else "")
            )
            if rec.track.choices:  # "ask every time", no single link: the platforms are in the text
                parts.append(text)
                continue
            listen = discord.ui.Button[Any](label="Listen", url=rec.track.url)
            parts.append(discord.ui.Section(text, accessory=listen))
    if out.entry_id is not None and out.asked:
        parts.append(discord.ui.TextDisplay(texts.ASK_LINE))
        parts.append(discord.ui.ActionRow(*label_buttons(owner, out)))
    buttons: list[discord.ui.Item[Any]] = []
    if out.entry_id is not None and not out.asked:
        buttons.extend(label_buttons(owner, out))
    if share:
        buttons.append(ShareButton(owner))
    if out.entry_id is not None:
        buttons.append(CalmButton(owner, out.entry_id))
    if buttons:
        parts.append(discord.ui.ActionRow(*buttons))
    if out.entry_id is not None:
        parts.append(discord.ui.ActionRow(CorrectSelect(owner, out.entry_id, emotions)))
    parts.append(discord.ui.TextDisplay(f"-# {texts.AI_NOTICE}"))
    layout = discord.ui.LayoutView(timeout=None)
    layout.add_item(discord.ui.Container(*parts, accent_colour=info.colour))
    if layout.total_children_count > V2_MAX_COMPONENTS:  # cannot happen with 5 tracks; never send one
        raise ValueError(f"{layout.total_children_count} components (V2 allows {V2_MAX_COMPONENTS})")
    return layout, files


def label_buttons(owner: int, out: CheckOutcome) -> list[discord.ui.Item[Any]]:
    """ "Spot on", or Yes / No when this reading asks "Did I get it right?"."""
    assert out.entry_id is not None
    kinds = ("yes", "no") if out.asked else ("ok",)
    return [LabelButton(kind, owner, out.entry_id) for kind in kinds]


def _heatmap_gallery() -> discord.ui.MediaGallery[Any]:
    """The heatmap, as the message's attachment of that name, in a one-item media gallery."""
    item = discord.MediaGalleryItem(f"attachment://{embeds.HEATMAP_NAME}", description=texts.HEATMAP_ALT)
    return discord.ui.MediaGallery(item)


def public_copy(message: discord.Message, shared_by: str, heatmap: bytes | None) -> dict[str, Any]:
    """A V2 reading re-posted by its owner: the same container without its buttons, with a line
    naming who shared it, and the heatmap uploaded again (the original was only theirs)."""
    original = discord.ui.LayoutView.from_message(message, timeout=None)
    layout = discord.ui.LayoutView(timeout=None)
    for top in original.children:
        if not isinstance(top, discord.ui.Container):
            continue
        parts: list[discord.ui.Item[Any]] = [discord.ui.TextDisplay(shared_by)]
        for item in top.children:
            if isinstance(item, discord.ui.ActionRow):
                continue  # Share, calm face, correction: the owner's own
            if isinstance(item, discord.ui.MediaGallery):
                if heatmap is None:
                    continue
                item = _heatmap_gallery()
            parts.append(item)
        layout.add_item(discord.ui.Container(*parts, accent_colour=top.accent_colour))
    files = [discord.File(io.BytesIO(heatmap), embeds.HEATMAP_NAME)] if heatmap is not None else []
    return {"view": layout, "files": files}


def link_view(tracks: Sequence[Recommendation]) -> discord.ui.View:
    """One link button per track (Discord opens Spotify; nothing comes back to the bot)."""
    view = discord.ui.View(timeout=None)
    for rec in tracks[:5]:
        if rec.track.choices:  # a link per platform, in the embed's text
            continue
        label = f"{rec.track.title} — {rec.track.artists[0]}" if rec.track.artists else rec.track.title
        view.add_item(discord.ui.Button(label=label[:80], url=rec.track.url, row=0))
    return view


def check_view(
    owner: int, out: CheckOutcome, emotions: EmotionRegistry, share: bool = True
) -> discord.ui.View:
    """Link buttons for the tracks, then Spot on (or Yes / No), Share (not in DMs), calm face and
    the correction select."""
    view = link_view(out.tracks)
    if out.entry_id is not None:
        for item in label_buttons(owner, out):
            view.add_item(item)
    if share:
        view.add_item(ShareButton(owner))
    if out.entry_id is not None:
        view.add_item(CalmButton(owner, out.entry_id))
        view.add_item(CorrectSelect(owner, out.entry_id, emotions))
    return view
