"""Yes/no choices that change what moodring keeps: consent (Accept reads a photo already sent),
/mood forget's confirmation, the switch to help improve readings; and the reply a check ends
in (the consent prompt, an error's sentence, or the reading)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import discord

from bot import embeds, texts
from bot.context import context
from bot.mood_flow import CheckOutcome, check_mood
from bot.services import Services
from bot.store import NoConsent
from bot.views_common import OwnerOnly, downloader, measured, server_installed
from bot.views_reading import check_view, reading_layout
from recommender.ranking import Recommendation

# (label, style) of the yes and no buttons of each confirmation kind
CHOICES: dict[str, tuple[tuple[str, discord.ButtonStyle], tuple[str, discord.ButtonStyle]]] = {
    "consent": (("Accept", discord.ButtonStyle.success), ("Decline", discord.ButtonStyle.secondary)),
    "forget": (("Delete everything", discord.ButtonStyle.danger), ("Cancel", discord.ButtonStyle.secondary)),
}


class ChoiceButton(
    OwnerOnly,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mr:(?P<kind>consent|forget):(?P<owner>\d+):(?P<answer>yes|no)(?::(?P<pending>[0-9a-f]{16}))?",
):
    """Yes/no buttons of the consent prompt and of the /mood forget confirmation.

    A consent prompt shown for a photo carries a ``pending`` token: Accept reads that photo.
    """

    def __init__(self, kind: str, owner: int, yes: bool, pending: str | None = None) -> None:
        label, style = CHOICES[kind][0 if yes else 1]
        suffix = f":{pending}" if pending else ""
        super().__init__(
            discord.ui.Button(
                label=label, style=style, custom_id=f"mr:{kind}:{owner}:{'yes' if yes else 'no'}{suffix}"
            )
        )
        self.kind, self.owner, self.yes, self.pending = kind, owner, yes, pending

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return m["kind"], int(m["owner"]), m["answer"] == "yes", m["pending"]

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        bot = context(interaction)
        if self.kind == "consent" and self.yes:
            if self.pending and not await bot.services.pending.holds(self.pending, self.owner):
                # the photo it was for is gone (expired, or the user asked to be forgotten since):
                # an old prompt must not bring consent back. A fresh check asks afresh.
                await interaction.response.edit_message(content=texts.CONSENT_STALE, view=None)
                return
            await bot.services.store.set_consent(self.owner, True)
            if not self.pending:
                await bot.services.pending.drop_for(self.owner)  # consent given another way
                await interaction.response.edit_message(content=texts.CONSENT_ACCEPTED, view=None)
                return
            await interaction.response.edit_message(content=texts.CONSENT_ACCEPTED_READING, view=None)
            await self._read_pending(interaction, self.pending)
            return
        if self.pending:
            await bot.services.pending.drop(self.pending)
        if self.kind == "forget" and not self.yes:
            await interaction.response.edit_message(content=texts.FORGET_CANCELLED, view=None)
            return
        # Decline and "Delete everything" both forget the user: acknowledge at once (Discord
        # allows 3 s), then leave their sessions and delete their keys, then say what went.
        await interaction.response.defer()
        deleted = await bot.forget_user(self.owner)
        text = texts.CONSENT_DECLINED if self.kind == "consent" else texts.forget_done(deleted)
        await interaction.edit_original_response(content=text, view=None)

    async def _read_pending(self, interaction: discord.Interaction, token: str) -> None:
        """Read the photo sent with the first `/mood check`, now that consent is given."""
        services = context(interaction).services
        held = await services.pending.take(token, self.owner)
        if held is None:
            await interaction.followup.send(texts.PENDING_GONE, ephemeral=True)
            return

        out = await check_mood(
            self.owner,
            downloader(lambda: interaction.client.http.get_from_cdn(held.url)),
            store=services.store,
            analyzer=services.analyzer,
            recommender=services.recommender,
            strategy=held.strategy,  # type: ignore[arg-type]
            cooldown_s=services.settings.cooldown_s,
        )
        services.metrics.check(out.error)
        share = server_installed(interaction)  # not in the bot's DM, nor where only the user installed it
        sent = await interaction.followup.send(
            **reply_for(services, self.owner, out, share=share), ephemeral=True
        )
        follow_links(interaction, sent, self.owner, out, share)


class ContributeButton(
    OwnerOnly,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mr:contrib:(?P<owner>\d+):(?P<on>on|off)",
):
    """`/mood privacy`'s switch for the separate consent to help improve readings for everyone.

    Withdrawing always works, like forget (:mod:`bot.gate`); opting in follows the server switch."""

    def __init__(self, owner: int, on: bool) -> None:
        super().__init__(
            discord.ui.Button(
                label=texts.CONTRIBUTE_BUTTON_ON if on else texts.CONTRIBUTE_BUTTON_OFF,
                style=discord.ButtonStyle.primary if on else discord.ButtonStyle.secondary,
                custom_id=f"mr:contrib:{owner}:{'on' if on else 'off'}",
            )
        )
        self.owner, self.on = owner, on

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        return int(m["owner"]), m["on"] == "on"

    @measured
    async def callback(self, interaction: discord.Interaction) -> None:
        store = context(interaction).services.store
        if self.on:
            try:
                await store.set_contributing(self.owner, True)
            except NoConsent:
                await interaction.response.send_message(texts.CONTRIBUTE_NEEDS_CONSENT, ephemeral=True)
                return
            await interaction.response.edit_message(view=privacy_view(self.owner, contributing=True))
            await interaction.followup.send(texts.CONTRIBUTE_ON, ephemeral=True)
            return
        removed = await store.set_contributing(self.owner, False)
        await interaction.response.edit_message(view=privacy_view(self.owner, contributing=False))
        await interaction.followup.send(
            texts.CONTRIBUTE_OFF.format(what=texts.plural(removed, "labelled reading")), ephemeral=True
        )


def privacy_view(owner: int, contributing: bool) -> discord.ui.View:
    """`/mood privacy`: Accept / Decline, and the switch to help improve readings (or to stop)."""
    view = consent_view(owner)
    view.add_item(ContributeButton(owner, on=not contributing))
    return view


def consent_view(owner: int, pending: str | None = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ChoiceButton("consent", owner, True, pending))
    view.add_item(ChoiceButton("consent", owner, False, pending))
    return view


def forget_view(owner: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ChoiceButton("forget", owner, True))
    view.add_item(ChoiceButton("forget", owner, False))
    return view


def error_reply(services: Services, user_id: int, code: str, retry_after_s: float = 0.0) -> dict[str, Any]:
    """Message arguments for a flow that stopped: the consent prompt, or the error's sentence."""
    if code == "consent_needed":
        return {"content": texts.CONSENT, "view": consent_view(user_id)}
    max_mb = services.settings.max_photo_bytes / 2**20
    return {"content": texts.error(code, seconds=retry_after_s, max_mb=max_mb)}


def reply_for(
    services: Services, user_id: int, out: CheckOutcome, share: bool = True, v2: bool | None = None
) -> dict[str, Any]:
    """Message arguments for a check's outcome: consent prompt, error sentence or the full answer.

    The answer is a Components V2 layout (:func:`reading_layout`) unless ``v2`` is False or
    ``MOODRING_COMPONENTS_V2=false``: then the plain embed with buttons, for where V2 isn't
    allowed (the restart path edits a reply Discord created before the layout existed).
    """
    if out.error:
        return error_reply(services, user_id, out.error, out.retry_after_s)
    if services.settings.components_v2 if v2 is None else v2:
        layout, files = reading_layout(out, services.emotions, user_id, share)
        return {"view": layout, "files": files}
    embed, files = embeds.check_embed(out, services.emotions)
    view = check_view(user_id, out, services.emotions, share=share)
    return {"embed": embed, "files": files, "view": view}


def follow_links(
    interaction: discord.Interaction,
    sent: discord.WebhookMessage,
    user_id: int,
    out: CheckOutcome,
    share: bool,
) -> None:
    """A reading's reply gets the track links its deadline left behind, by an edit when they land."""
    bot = context(interaction)

    def render(better: list[Recommendation]) -> dict[str, Any]:
        reply = reply_for(bot.services, user_id, replace(out, tracks=tuple(better)), share)
        reply.pop("files", None)  # the heatmap stays the message's attachment
        return reply

    bot.late_links.follow(sent, out.tracks, out.platform, render)
