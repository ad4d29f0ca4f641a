"""Buttons and selects that survive restarts: all state is in the custom_id (and Redis).

One module per family (:mod:`bot.views_reading`, :mod:`bot.views_choices`,
:mod:`bot.views_session`; the owner and server checks in :mod:`bot.views_common`); this module
registers them and names what the cogs use.

Each component is a :class:`discord.ui.DynamicItem`; the bot registers them once in
``setup_hook`` so any bot process (any shard, after any restart) can handle a click.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.views_choices import (
    ChoiceButton,
    ContributeButton,
    consent_view,
    error_reply,
    follow_links,
    forget_view,
    privacy_view,
    reply_for,
)
from bot.views_common import downloader, export_file, server_installed
from bot.views_reading import (
    CalmButton,
    CorrectSelect,
    LabelButton,
    ShareButton,
    check_view,
    reading_layout,
)
from bot.views_session import SessionButton, session_view

__all__ = [
    "DYNAMIC_ITEMS",
    "CorrectSelect",
    "check_view",
    "consent_view",
    "downloader",
    "error_reply",
    "export_file",
    "follow_links",
    "forget_view",
    "privacy_view",
    "reading_layout",
    "reply_for",
    "server_installed",
    "session_view",
]

DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    ChoiceButton,
    ShareButton,
    CorrectSelect,
    CalmButton,
    LabelButton,
    ContributeButton,
    SessionButton,
)
