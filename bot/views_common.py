"""What every persistent component checks first (whose button, the server switch), and small
Discord helpers the families share."""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord

from bot import gate, texts
from bot.context import context
from bot.mood_flow import DownloadFailed


def server_installed(interaction: discord.Interaction) -> bool:
    """In a server where moodring itself is installed (not only to the user's account)."""
    return interaction.guild_id is not None and interaction.is_guild_integration()


async def switched_on(interaction: discord.Interaction, custom_id: str) -> bool:
    """The server switch (:mod:`bot.gate`) for a button or select; told why when it's off."""
    services = context(interaction).services
    return await gate.allowed(interaction, services.guilds, gate.component_feature(custom_id))


async def owner_only(interaction: discord.Interaction, owner: int, custom_id: str = "") -> bool:
    metrics = context(interaction).services.metrics
    metrics.started(interaction)
    if interaction.user.id != owner:
        await interaction.response.send_message(texts.error("not_yours"), ephemeral=True)
        metrics.finished(interaction, component_name(custom_id), "refused")
        return False
    if not await switched_on(interaction, custom_id):
        metrics.finished(interaction, component_name(custom_id), "refused")
        return False
    return True


def component_name(custom_id: str) -> str:
    """A component's family for metrics: ``mr:share:123`` → ``share`` (no ids in labels)."""
    parts = custom_id.split(":")
    return parts[1] if len(parts) > 1 else "?"


Callback = TypeVar("Callback", bound=Callable[[Any, discord.Interaction], Awaitable[None]])


def measured(callback: Callback) -> Callback:
    """A persistent component's callback, counted and timed by its family (``bot.metrics``)."""

    @functools.wraps(callback)
    async def run(self: Any, interaction: discord.Interaction) -> None:
        metrics = context(interaction).services.metrics
        metrics.started(interaction)
        name = component_name(str(getattr(self, "custom_id", "")))
        try:
            await callback(self, interaction)
        except Exception as exc:
            metrics.finished(interaction, name, "error")
            metrics.error(exc)
            raise
        metrics.finished(interaction, name, "ok")

    return run  # type: ignore[return-value]


def downloader(read: Callable[[], Awaitable[bytes]]) -> Callable[[], Awaitable[bytes]]:
    """A photo download for the check flow (called only once consent and cooldown allow it)."""

    async def fetch() -> bytes:
        try:
            return await read()
        except discord.HTTPException as exc:
            raise DownloadFailed(str(exc.status)) from exc

    return fetch


def export_file(data: dict[str, Any]) -> discord.File:
    return discord.File(io.BytesIO(json.dumps(data, indent=2).encode()), "moodring-export.json")


class Persistent:
    """A component discord.py rebuilds from its ``custom_id`` after a restart, in any process
    (mixed in before ``discord.ui.DynamicItem``): :meth:`rebuild` turns the template's groups into
    the constructor's arguments, so discord.py's classmethod is written once, here."""

    @staticmethod
    def rebuild(m: re.Match[str], interaction: discord.Interaction) -> tuple[Any, ...]:
        raise NotImplementedError

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Any:
        return cls(*cls.rebuild(match, interaction))


class OwnerOnly(Persistent):
    """A persistent component only the user it was made for may use, and only where the server
    switch allows it (mixed in before ``discord.ui.DynamicItem``; the item sets ``owner``)."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        me: Any = self  # a DynamicItem with an ``owner``
        return await owner_only(interaction, me.owner, me.custom_id)
