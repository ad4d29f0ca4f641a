"""Localised command names and descriptions (discord.py ``app_commands.Translator``).

One JSON file per Discord locale in ``bot/locales/`` (``de.json``: German), each mapping the
English string (a command, option or choice name, or a description) to its translation. Adding
a language is adding a file; a string without a translation falls back to English.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib import resources

import discord
from discord import app_commands

log = logging.getLogger(__name__)


def load_tables() -> dict[str, dict[str, str]]:
    """Every shipped locale's table: ``{"de": {"check": "prüfen", ...}, ...}``."""
    tables = {}
    for entry in resources.files("bot.locales").iterdir():
        if entry.name.endswith(".json"):
            tables[entry.name.removesuffix(".json")] = dict(json.loads(entry.read_text(encoding="utf-8")))
    return tables


class TableTranslator(app_commands.Translator):
    def __init__(self, tables: Mapping[str, Mapping[str, str]]) -> None:
        self.tables = tables

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        table = self.tables.get(locale.value)
        return None if table is None else table.get(string.message)
