"""Small steps shared by the fake-Discord tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import face_photo
from tests.fakediscord import FakeDiscord, Ix


def custom_ids(msg: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in msg["components"] for c in row["components"] if "custom_id" in c]


def links(msg: dict[str, Any]) -> list[str]:
    return [c["url"] for row in msg["components"] for c in row["components"] if c.get("style") == 5]


async def accept_consent(fake: FakeDiscord, user_id: int) -> None:
    ix = await fake.slash(user_id, "mood", "privacy")
    await fake.acked(ix)
    msg = await fake.reply(ix)
    accept = next(c for c in custom_ids(msg) if c.endswith(":yes"))
    click = await fake.click(user_id, msg, accept)
    assert (await fake.acked(click))["type"] == 7


async def check(fake: FakeDiscord, user_id: int, photo: bytes | None = None) -> tuple[Ix, dict[str, Any]]:
    att = fake.upload(photo or face_photo(size=(160, 160)))
    ix = await fake.slash(user_id, "mood", "check", attachments={"photo": att})
    return ix, await fake.reply(ix)
