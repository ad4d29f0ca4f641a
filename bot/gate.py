"""May this interaction run here? The server switch (``/moodring server``), in one place.

Every slash command, context menu and button asks :func:`refusal` first (the command tree's
``interaction_check`` and each button's ``interaction_check``). A server that turned moodring
off gets one line and nothing runs, except what a user needs to leave and to know: ``/mood
forget`` (and its buttons), ``/mood privacy``, ``/mood export``, and ``/moodring`` itself for the
admins. Outside servers (DMs, group DMs) nothing is switched off.
"""

from __future__ import annotations

import logging
from typing import Literal

import discord

from bot import texts
from bot.guilds import Guilds, ServerSettings

log = logging.getLogger(__name__)

Feature = Literal["exempt", "session", "watch", "core"]

EXEMPT_COMMANDS = frozenset({"mood forget", "mood privacy", "mood export"})


def command_feature(qualified_name: str) -> Feature:
    if qualified_name in EXEMPT_COMMANDS or qualified_name.startswith("moodring"):
        return "exempt"
    if qualified_name.startswith("session"):
        return "session"
    return "core"


def component_feature(custom_id: str) -> Feature:
    if custom_id.startswith("mr:forget:") or (custom_id.startswith("mr:consent:") and ":no" in custom_id):
        return "exempt"  # forgetting, and declining (which forgets), always work
    if custom_id.startswith("mr:contrib:") and custom_id.endswith(":off"):
        return "exempt"  # so does withdrawing from helping improve readings (it deletes)
    if custom_id.startswith("mr:sess:"):
        return "session"
    return "core"


async def refusal(guilds: Guilds, guild_id: int | None, feature: Feature) -> str | None:
    """The sentence that stops ``feature`` in this server, or None when it may run."""
    if feature == "exempt" or guild_id is None:
        return None
    return why_not(await guilds.get(guild_id), feature)


def why_not(settings: ServerSettings, feature: Feature) -> str | None:
    """:func:`refusal` for settings already read (a caller that needs them for more)."""
    if feature == "exempt":
        return None
    if not settings.enabled:
        return texts.SERVER_OFF
    if feature == "session" and not settings.sessions:
        return texts.SESSIONS_OFF
    if feature == "watch" and not settings.watch:
        return texts.WATCH_OFF
    return None


# where an interaction keeps the server settings it has read (discord.py's ``Interaction.extras``)
_SETTINGS = "moodring.server_settings"


async def server_settings(interaction: discord.Interaction, guilds: Guilds) -> ServerSettings:
    """The settings of the interaction's server, read from Redis once per interaction: the gate
    reads them, and a command that needs them too (``/mood check``'s default strategy) reuses them."""
    cached = interaction.extras.get(_SETTINGS)
    if not isinstance(cached, ServerSettings):
        cached = interaction.extras[_SETTINGS] = await guilds.get(interaction.guild_id)
    return cached


async def allowed(interaction: discord.Interaction, guilds: Guilds, feature: Feature) -> bool:
    """True when ``feature`` may run; otherwise the user is told why (ephemeral) and it's False."""
    why = None
    if feature != "exempt" and interaction.guild_id is not None:
        why = why_not(await server_settings(interaction, guilds), feature)
    if why is None:
        return True
    log.info("refused %s in guild %s: switched off", feature, interaction.guild_id)
    if interaction.response.is_done():
        await interaction.followup.send(why, ephemeral=True)
    else:
        await interaction.response.send_message(why, ephemeral=True)
    return False
