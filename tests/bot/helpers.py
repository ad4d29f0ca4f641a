"""Small steps shared by the fake-Discord tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.conftest import face_photo
from tests.fakediscord import FakeDiscord, Ix

IS_COMPONENTS_V2 = 1 << 15


def walk(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component of a message, nested ones (containers, rows, section accessories) included."""
    for c in components:
        yield c
        yield from walk(c.get("components") or [])
        if c.get("accessory"):
            yield from walk([c["accessory"]])


def custom_ids(msg: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for c in walk(msg["components"]) if "custom_id" in c]


def links(msg: dict[str, Any]) -> list[str]:
    return [c["url"] for c in walk(msg["components"]) if c.get("type") == 2 and c.get("style") == 5]


def reading_text(msg: dict[str, Any]) -> str:
    """All the text of a reading: its V2 text displays, or its embed's title, text and fields."""
    if msg["flags"] & IS_COMPONENTS_V2:
        return "\n".join(c["content"] for c in walk(msg["components"]) if c.get("type") == 10)
    parts = []
    for e in msg.get("embeds") or []:
        parts += [e.get("title", ""), e.get("description", "")]
        parts += [f"{f['name']}\n{f['value']}" for f in e.get("fields", [])]
    return "\n".join(parts)


async def accept_consent(fake: FakeDiscord, user_id: int) -> None:
    ix = await fake.slash(user_id, "mood", "privacy")
    await fake.acked(ix)
    msg = await fake.reply(ix)
    accept = next(c for c in custom_ids(msg) if c.endswith(":yes"))
    click = await fake.click(user_id, msg, accept)
    assert (await fake.acked(click))["type"] == 7


async def start_session(fake: FakeDiscord, host_id: int, length: int = 5, shard: int = 0) -> dict[str, Any]:
    """``/session start`` (lift), waited for until the bot says it started; the session board.

    The command defers first and posts the board after: a test that clicks or reads before the
    reply races the bot (a click on a message without the board's buttons gets no callback).
    """
    options = {"strategy": "lift", "length": length}
    ix = await fake.slash(host_id, "session", "start", options=options, shard=shard)
    await fake.acked(ix)
    assert "Session started" in (await fake.reply(ix))["content"]
    return fake.messages[int(max(fake.messages))]


async def check(fake: FakeDiscord, user_id: int, photo: bytes | None = None) -> tuple[Ix, dict[str, Any]]:
    att = fake.upload(photo or face_photo(size=(160, 160)))
    ix = await fake.slash(user_id, "mood", "check", attachments={"photo": att})
    return ix, await fake.reply(ix)
