"""Localised command names and descriptions: English plus German, as Discord receives them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bot.i18n import load_tables
from tests.bot.conftest import BotFactory
from tests.fakediscord import FakeDiscord

NAME = re.compile(r"^[-_\w]{1,32}$")  # Discord's rule for chat-input names (letters of any script)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for option in node.get("options") or []:
        yield from _walk(option)
    yield from node.get("choices") or []


async def test_every_command_option_and_choice_is_localised_in_german(
    fake: FakeDiscord, start_bot: BotFactory
) -> None:
    await start_bot(dev_guild_id=1234)
    commands = fake.calls_to("PUT", r"^/applications/\d+/")[0].json
    german = load_tables()["de"]
    used = set()
    for command in commands:
        for node in _walk(command):
            de = (node.get("name_localizations") or {}).get("de")
            assert de, f"no German name for {node['name']!r}"
            used.add(node["name"])
            if command["type"] == 1 and "value" not in node:  # a chat-input name (not a choice)
                assert NAME.match(de) and de == de.lower(), de
            if "description" in node and command["type"] == 1:
                desc = (node.get("description_localizations") or {}).get("de")
                assert desc and len(desc) <= 100, node["name"]
                used.add(node["description"])
    assert set(german) == used  # no missing and no stale entries
    mood = next(c for c in commands if c["name"] == "mood")
    assert mood["name_localizations"]["de"] == "stimmung"
    menu = next(c for c in commands if c["name"] == "Read mood")
    assert menu["name_localizations"]["de"] == "Stimmung lesen"
