"""The reading as Components V2 (what Discord receives), and the classic embed as its fallback."""

from __future__ import annotations

from collections import Counter

from tests.bot.conftest import BotFactory
from tests.bot.helpers import IS_COMPONENTS_V2, accept_consent, check, custom_ids, links, walk
from tests.fakediscord import FakeDiscord

ALICE = 4242
CONTAINER, ROW, BUTTON, SELECT, SECTION, TEXT, GALLERY, SEPARATOR = 17, 1, 2, 3, 9, 10, 12, 14


async def test_the_reading_is_one_v2_container_within_discords_limits(
    fake: FakeDiscord, start_bot: BotFactory, worker: None
) -> None:
    await start_bot()
    await accept_consent(fake, ALICE)
    _, msg = await check(fake, ALICE)
    assert msg["flags"] & IS_COMPONENTS_V2
    assert not msg["content"] and not msg["embeds"]  # V2 allows neither
    assert [c["type"] for c in msg["components"]] == [CONTAINER]
    container = msg["components"][0]
    assert isinstance(container.get("accent_color"), int)  # the emotion's colour
    every = list(walk(msg["components"]))
    assert len(every) <= 40
    kinds = Counter(c["type"] for c in every)
    assert kinds[GALLERY] == 1 and kinds[SEPARATOR] == 1 and kinds[SELECT] == 1
    assert kinds[SECTION] == 5  # one per track
    for section in (c for c in every if c["type"] == SECTION):
        assert [c["type"] for c in section["components"]] == [TEXT]
        assert section["accessory"]["type"] == BUTTON and section["accessory"]["style"] == 5  # a link
    gallery = next(c for c in every if c["type"] == GALLERY)
    names = [a["filename"] for a in msg["attachments"]]
    assert [i["media"]["url"] for i in gallery["items"]] == [f"attachment://{n}" for n in names]
    assert gallery["items"][0]["description"]  # alt text for screen readers
    rows = [c for c in container["components"] if c["type"] == ROW]
    assert all(1 <= len(r["components"]) <= 5 for r in rows)
    assert len(links(msg)) == 5
    ids = custom_ids(msg)
    assert f"mr:share:{ALICE}" in ids and any(i.startswith("mr:calm:") for i in ids)
    texts = [c["content"] for c in every if c["type"] == TEXT]
    assert texts[0].startswith("## ") and "You look" in texts[0]
    assert texts[-1].startswith("-# ")  # the AI notice, small
    assert all(len(t) <= 4000 for t in texts)


async def test_the_classic_embed_is_the_fallback(
    fake: FakeDiscord, start_bot: BotFactory, worker: None
) -> None:
    await start_bot(components_v2=False)
    await accept_consent(fake, ALICE)
    _, msg = await check(fake, ALICE)
    assert not msg["flags"] & IS_COMPONENTS_V2
    assert "You look" in msg["embeds"][0]["title"]
    assert msg["embeds"][0]["image"]["url"] == "attachment://heatmap.jpg"
    assert len(links(msg)) == 5 and f"mr:share:{ALICE}" in custom_ids(msg)


def test_the_docs_mocks_render_from_the_bots_own_payloads() -> None:
    """docs/render_mocks.py (docs/discord.md) keeps working as the replies change."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "render_mocks.py"
    spec = importlib.util.spec_from_file_location("render_mocks", path)
    assert spec is not None and spec.loader is not None
    mocks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mocks)
    replies = mocks.payloads()
    assert {"reading", "reading-classic-embed", "consent-prompt", "session-board"} <= set(replies)
    reading, _ = replies["reading"]
    assert reading["flags"] & IS_COMPONENTS_V2 and len(list(walk(reading["components"]))) <= 40
    for payload, pictures in replies.values():
        assert mocks.render(payload, pictures).startswith(b"\x89PNG")
