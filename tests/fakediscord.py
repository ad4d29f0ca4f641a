"""A small fake of Discord's REST API, gateway and CDN on 127.0.0.1 for driving the real discord.py.

Point discord.py at it with ``discord.http.Route.BASE = fake.api_base`` (the bot's
``MOODRING_DISCORD_API_BASE`` setting does exactly that); ``GET /gateway/bot`` hands out
the fake's websocket URL. The fake records every REST call, enforces Discord's
3-second rule for the first interaction response (late callbacks get ``10062 Unknown
interaction``), can answer any route with a 429, and serves uploaded files from a CDN path
so a bot can re-read attachments.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = 900_000_000_000_000_001
GUILD_ID = 910_000_000_000_000_001
CHANNEL_ID = 920_000_000_000_000_001
EPHEMERAL = 1 << 6
IS_COMPONENTS_V2 = 1 << 15
DEADLINE_S = 3.0


def user(user_id: int, name: str | None = None, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name or f"user{user_id % 1000}",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "bot": bot,
    }


BOT_USER = user(APP_ID, "moodring", bot=True)


@dataclass
class Call:
    method: str
    path: str
    json: Any
    files: list[tuple[str, bytes]]
    status: int
    at: float


@dataclass
class Ix:
    """One interaction the fake dispatched, and what the bot answered."""

    id: int
    token: str
    payload: dict[str, Any]
    sent_at: float
    callback: dict[str, Any] | None = None
    callback_after_s: float | None = None
    missed_deadline: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)  # original + follow-ups, in order
    original_id: int | None = None


class FakeDiscord:
    def __init__(self) -> None:
        self._ids = itertools.count(1_000_000_000_000_000_000)
        self.calls: list[Call] = []
        self.interactions: dict[str, Ix] = {}  # by token
        self.messages: dict[int, dict[str, Any]] = {}
        self.cdn: dict[int, bytes] = {}
        self.sockets: list[web.WebSocketResponse] = []  # identified gateway connections, in order
        self.token: str | None = None  # set: REST calls with another bot token get 401
        self.app_flags = 0  # the application's flags (privileged intents granted: 1 << 18, 1 << 19)
        self._seqs: dict[int, itertools.count[int]] = {}
        self._dms: dict[int, int] = {}  # user id → DM channel id
        self.message_content = False  # the portal's "Message Content Intent" switch
        self.guild_create = False  # send GUILD_CREATE for the test server after READY (guild cached)
        self.closed_dms: set[int] = set()  # users who don't accept DMs from the bot (error 50007)
        self.identified = 0
        self.edits: dict[int, list[float]] = {}
        self._limits: list[tuple[str, re.Pattern[str], float]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{id}/{name}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    def new_id(self) -> int:
        return next(self._ids)

    # test-side controls ------------------------------------------------------------------------
    def rate_limit(self, method: str, path_regex: str, retry_after: float = 0.3) -> None:
        """Answer the next request matching ``method path_regex`` with a 429."""
        self._limits.append((method, re.compile(path_regex), retry_after))

    def upload(
        self, data: bytes, filename: str = "selfie.jpg", content_type: str = "image/jpeg"
    ) -> dict[str, Any]:
        """Put a file on the fake CDN; return an attachment object pointing at it."""
        att_id = self.new_id()
        self.cdn[att_id] = data
        return {
            "id": str(att_id),
            "filename": filename,
            "size": len(data),
            "url": f"http://127.0.0.1:{self.port}/cdn/{att_id}/{filename}",
            "proxy_url": f"http://127.0.0.1:{self.port}/cdn/{att_id}/{filename}",
            "content_type": content_type,
        }

    def message(
        self, author_id: int, attachments: list[dict[str, Any]] | None = None, content: str = ""
    ) -> dict[str, Any]:
        """A channel message by a user (e.g. the target of a context-menu command)."""
        msg = self._message(CHANNEL_ID, user(author_id), content, attachments or [], [], [], 0)
        self.messages[int(msg["id"])] = msg
        return msg

    async def wait_ready(self, n: int = 1, within: float = 30) -> None:
        await self.wait_for(lambda: self.identified >= n, within, "bot did not identify")

    async def wait_for(self, pred: Callable[[], Any], within: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def slash(
        self,
        user_id: int,
        name: str,
        sub: str | None = None,
        options: dict[str, Any] | None = None,
        attachments: dict[str, dict[str, Any]] | None = None,
        shard: int = 0,
        perms: int = 0,
        where: str = "guild",
    ) -> Ix:
        """Dispatch a chat-input command (``/name sub option=value``).

        ``where``: ``guild`` (a server that installed the bot), ``user-guild`` (a server where only
        the user installed it), ``dm`` (the bot's DM, user install), ``group-dm`` (user install).
        """
        opts: list[dict[str, Any]] = []
        resolved: dict[str, Any] = {}
        for key, value in (options or {}).items():
            if isinstance(value, dict) and "channel_id" in value:  # a channel option (type 7)
                cid = str(value["channel_id"])
                opts.append({"name": key, "type": 7, "value": cid})
                channel = {"id": cid, "type": 0, "name": "general", "guild_id": str(GUILD_ID)}
                resolved.setdefault("channels", {})[cid] = channel | {"permissions": str((1 << 41) - 1)}
                continue
            kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
            opts.append({"name": key, "type": kind, "value": value})
        for key, att in (attachments or {}).items():
            opts.append({"name": key, "type": 11, "value": att["id"]})
            resolved.setdefault("attachments", {})[att["id"]] = att
        if sub is not None:  # "group sub" is a subcommand inside a subcommand group
            *group, leaf = sub.split()
            opts = [{"name": leaf, "type": 1, "options": opts}]
            if group:
                opts = [{"name": group[0], "type": 2, "options": opts}]
        data = {"id": str(self.new_id()), "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        return await self._dispatch(2, user_id, data, shard=shard, perms=perms, where=where)

    async def post(
        self,
        author_id: int,
        attachments: list[dict[str, Any]],
        dm: bool = True,
        mention_bot: bool = False,
        shard: int = 0,
        text: str = "",
    ) -> dict[str, Any]:
        """A user posts a message (in a DM with the bot, or in the guild channel) — MESSAGE_CREATE."""
        channel = self.dm_channel(author_id) if dm else CHANNEL_ID
        content = (f"<@{APP_ID}> " if mention_bot else "") + text
        msg = self._message(channel, user(author_id), content.strip(), attachments, [], [], 0)
        if mention_bot:
            msg["mentions"] = [BOT_USER]
        if not dm:
            msg["guild_id"] = str(GUILD_ID)
        self.messages[int(msg["id"])] = msg
        ws = self.sockets[shard]
        await ws.send_json({"op": 0, "t": "MESSAGE_CREATE", "s": next(self._seqs[id(ws)]), "d": msg})
        return msg

    def dm_channel(self, user_id: int) -> int:
        return self._dms.setdefault(user_id, self.new_id())

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        return [
            m for m in self.messages.values() if m["channel_id"] == str(channel_id) and m["author"]["bot"]
        ]

    async def context_menu(
        self, user_id: int, name: str, target: dict[str, Any], shard: int = 0, where: str = "guild"
    ) -> Ix:
        data = {
            "id": str(self.new_id()),
            "name": name,
            "type": 3,
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: target}},
        }
        return await self._dispatch(2, user_id, data, shard=shard, where=where)

    async def click(
        self,
        user_id: int,
        message: dict[str, Any],
        custom_id: str,
        values: list[str] | None = None,
        shard: int = 0,
        perms: int = 0,
        where: str = "guild",
    ) -> Ix:
        """Press a button (or pick ``values`` in a select) on ``message``."""
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": 2}
        if values is not None:
            data = {"custom_id": custom_id, "component_type": 3, "values": values}
        return await self._dispatch(3, user_id, data, message=message, shard=shard, perms=perms, where=where)

    async def reply(self, ix: Ix, n: int = 1, within: float = 60) -> dict[str, Any]:
        """The ``n``-th message the bot produced for ``ix`` (original response first)."""
        await self.wait_for(
            lambda: len(ix.messages) >= n and ix.messages[n - 1]["_filled"],
            within,
            f"message {n} for interaction",
        )
        return ix.messages[n - 1]

    async def acked(self, ix: Ix, within: float = 10) -> dict[str, Any]:
        await self.wait_for(lambda: ix.callback is not None or ix.missed_deadline, within, "callback")
        assert ix.callback is not None, "the bot answered after Discord's 3-second deadline"
        return ix.callback

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        rx = re.compile(pattern)
        return [c for c in self.calls if c.method == method and rx.search(c.path)]

    # gateway -------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.sockets.append(ws)
        seq = itertools.count(1)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 30_000}})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                op = payload.get("op")
                if op == 1:
                    await ws.send_json({"op": 11})
                elif op == 2:
                    if payload["d"].get("intents", 0) & (1 << 15) and not self.message_content:
                        await ws.close(code=4014)  # "Disallowed intent(s)": the portal switch is off
                        break
                    shard = payload["d"].get("shard", [0, 1])
                    ready = {
                        "v": 10,
                        "user": BOT_USER,
                        "guilds": [],
                        "session_id": f"session-{self.identified}",
                        "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                        "shard": shard,
                        "application": {"id": str(APP_ID), "flags": 0},
                    }
                    await ws.send_json({"op": 0, "t": "READY", "s": next(seq), "d": ready})
                    self._seqs[id(ws)] = seq
                    if self.guild_create:
                        await ws.send_json({"op": 0, "t": "GUILD_CREATE", "s": next(seq), "d": _guild()})
                    self.identified += 1
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
        return ws

    async def _dispatch(
        self,
        kind: int,
        user_id: int,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
        shard: int = 0,
        perms: int = 0,
        where: str = "guild",
    ) -> Ix:
        ix_id = self.new_id()
        token = f"tok{ix_id}"
        payload: dict[str, Any] = {
            "id": str(ix_id),
            "application_id": str(APP_ID),
            "type": kind,
            "token": token,
            "version": 1,
            "guild_id": str(GUILD_ID),
            "channel_id": str(CHANNEL_ID),
            "channel": _channel(),
            "member": {
                "user": user(user_id),
                "roles": [],
                "joined_at": _now_iso(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": str(perms),
            },
            "app_permissions": str((1 << 41) - 1),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
            "data": data,
        }
        if where != "guild":  # installed to the user's account (integration type 1)
            payload["authorizing_integration_owners"] = {"1": str(user_id)}
        if where in ("dm", "group-dm"):  # no server: a user, not a member; context 1 or 2
            for key in ("guild_id", "member", "guild_locale"):
                payload.pop(key)
            payload["user"] = user(user_id)
            channel_id = self.dm_channel(user_id) if where == "dm" else self.new_id()
            payload["channel_id"] = str(channel_id)
            payload["channel"] = {"id": str(channel_id), "type": 1 if where == "dm" else 3}
            if where == "group-dm":
                payload["channel"].update(name="friends", recipients=[user(user_id)], owner_id=str(user_id))
            payload["context"] = 1 if where == "dm" else 2
        if message is not None:
            payload["message"] = message
        ix = Ix(ix_id, token, payload, time.monotonic())
        self.interactions[token] = ix
        ws = self.sockets[shard]
        await ws.send_json({"op": 0, "t": "INTERACTION_CREATE", "s": next(self._seqs[id(ws)]), "d": payload})
        return ix

    # REST ----------------------------------------------------------------------------
    async def _cdn(self, request: web.Request) -> web.Response:
        data = self.cdn.get(int(request.match_info["id"]))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data)

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body, files = await _read_body(request)
        if self.token is not None and request.headers.get("Authorization") != f"Bot {self.token}":
            self.calls.append(Call(request.method, path, body, files, 401, time.monotonic()))
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        for i, (method, rx, retry_after) in enumerate(self._limits):
            if method == request.method and rx.search(path):
                del self._limits[i]
                self.calls.append(Call(request.method, path, body, files, 429, time.monotonic()))
                return _json(
                    {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
                    status=429,
                    headers={
                        "Retry-After": str(retry_after),
                        "Via": "1.1 google",
                        "X-RateLimit-Scope": "user",
                    },
                )
        status, out = self._route(request.method, path, body, files)
        self.calls.append(Call(request.method, path, body, files, status, time.monotonic()))
        if status == 204:
            return web.Response(status=204)
        return _json(out, status=status)

    def _route(self, method: str, path: str, body: Any, files: list[tuple[str, bytes]]) -> tuple[int, Any]:
        if path == "/users/@me":
            return 200, BOT_USER
        if path == "/oauth2/applications/@me":
            return 200, {
                "id": str(APP_ID),
                "name": "moodring",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": user(1),
                "verify_key": "0" * 64,
                "flags": self.app_flags,
            }
        if path == "/gateway/bot":
            return 200, {
                "url": f"ws://127.0.0.1:{self.port}/gateway",
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        if m := re.fullmatch(r"/applications/\d+(?:/guilds/\d+)?/commands", path):
            if method == "PUT":
                return 200, [
                    {
                        "description": "",
                        **c,
                        "id": str(self.new_id()),
                        "application_id": str(APP_ID),
                        "version": "1",
                    }
                    for c in body
                ]
            return 200, []
        if m := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", path):
            return self._callback(m.group(2), body, files)
        if m := re.fullmatch(r"/webhooks/\d+/([^/]+)", path):
            ix = self.interactions.get(m.group(1))
            if ix is None or method != "POST":
                return 404, {"message": "Unknown Webhook", "code": 10015}
            flags = int(body.get("flags") or 0)
            if ix.original_id is not None and not self.messages[ix.original_id].get("_filled"):
                # The first follow-up after a defer fills the deferred ("thinking") message.
                msg = self.messages[ix.original_id]
                self._fill(msg, body, files)
                msg["flags"] |= flags & IS_COMPONENTS_V2  # it becomes a V2 message if the body is one
                return 200, msg
            msg = self._new_message(body, files, flags)
            ix.messages.append(msg)
            return 200, msg
        if m := re.fullmatch(r"/webhooks/\d+/([^/]+)/messages/(@original|\d+)", path):
            ix = self.interactions.get(m.group(1))
            if ix is None:
                return 404, {"message": "Unknown Webhook", "code": 10015}
            msg_id = ix.original_id if m.group(2) == "@original" else int(m.group(2))
            if msg_id is None or msg_id not in self.messages:
                return 404, {"message": "Unknown Message", "code": 10008}
            msg = self.messages[msg_id]
            if method == "PATCH":
                self._fill(msg, body, files)
                msg["flags"] |= int(body.get("flags") or 0) & IS_COMPONENTS_V2
                self.edits.setdefault(msg_id, []).append(time.monotonic())
            return 200, msg
        if path == "/users/@me/channels" and method == "POST":
            recipient = int(body["recipient_id"])
            return 200, {"id": str(self.dm_channel(recipient)), "type": 1, "recipients": [user(recipient)]}
        if (m := re.fullmatch(r"/channels/(\d+)/messages", path)) and method == "POST":
            closed = {self._dms.get(u) for u in self.closed_dms}
            if int(m.group(1)) in closed:
                return 403, {"message": "Cannot send messages to this user", "code": 50007}
            return 200, self._new_message(body, files, int(body.get("flags") or 0), channel=int(m.group(1)))
        if m := re.fullmatch(r"/channels/\d+/messages/(\d+)", path):
            msg_id = int(m.group(1))
            if msg_id not in self.messages:
                return 404, {"message": "Unknown Message", "code": 10008}
            if method == "PATCH":
                self._fill(self.messages[msg_id], body, files)
                self.edits.setdefault(msg_id, []).append(time.monotonic())
            if method == "DELETE":
                self.messages.pop(msg_id)
                return 204, None
            return 200, self.messages[msg_id]
        return 404, {"message": f"fake discord has no route {method} {path}", "code": 0}

    def _callback(self, token: str, body: dict[str, Any], files: list[tuple[str, bytes]]) -> tuple[int, Any]:
        ix = self.interactions.get(token)
        if ix is None:
            return 404, {"message": "Unknown interaction", "code": 10062}
        after = time.monotonic() - ix.sent_at
        if ix.callback is not None:
            return 400, {"message": "Interaction has already been acknowledged.", "code": 40060}
        if after > DEADLINE_S:
            ix.missed_deadline = True
            return 404, {"message": "Unknown interaction", "code": 10062}
        ix.callback, ix.callback_after_s = body, after
        kind = body["type"]
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        msg: dict[str, Any] | None = None
        if kind in (4, 5):  # message / deferred message
            msg = self._new_message(data if kind == 4 else {}, files if kind == 4 else [], flags)
            msg["_filled"] = kind == 4
            ix.original_id = int(msg["id"])
            ix.messages.append(msg)
        elif kind == 6 and "message" in ix.payload:  # deferred update: @original is the component's message
            ix.original_id = int(ix.payload["message"]["id"])
        elif kind == 7:  # update the message the component is on
            target = ix.payload["message"]
            msg = self.messages.get(int(target["id"]), target)
            self._fill(msg, data, files)
            self.edits.setdefault(int(msg["id"]), []).append(time.monotonic())
        resource: dict[str, Any] = {"type": kind}
        if msg is not None:
            resource["message"] = msg
        return 200, {
            "interaction": {
                "id": str(ix.id),
                "type": ix.payload["type"],
                "response_message_id": msg["id"] if msg else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": resource,
        }

    # messages --------------------------------------------------------------------------
    def _message(
        self,
        channel: int,
        author: dict[str, Any],
        content: str,
        attachments: list[dict[str, Any]],
        embeds: list[dict[str, Any]],
        components: list[dict[str, Any]],
        flags: int,
    ) -> dict[str, Any]:
        return {
            "id": str(self.new_id()),
            "channel_id": str(channel),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": embeds,
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": components,
        }

    def _new_message(
        self, body: dict[str, Any], files: list[tuple[str, bytes]], flags: int, channel: int = CHANNEL_ID
    ) -> dict[str, Any]:
        msg = self._message(channel, BOT_USER, "", [], [], [], flags)
        self._fill(msg, body, files)
        msg["_filled"] = True
        self.messages[int(msg["id"])] = msg
        return msg

    def _fill(self, msg: dict[str, Any], body: dict[str, Any], files: list[tuple[str, bytes]]) -> None:
        for key in ("content", "embeds", "components", "message_reference"):
            if key in body and body[key] is not None:
                msg[key] = body[key]
        if "attachments" in body or files:
            kept = [
                a
                for a in msg["attachments"]
                if any(str(b.get("id")) == a["id"] for b in body.get("attachments", []))
            ]
            for name, data in files:
                kept.append(self.upload(data, filename=name, content_type="image/png"))
            msg["attachments"] = kept
        msg["_filled"] = True
        msg["edited_timestamp"] = _now_iso()


def _channel() -> dict[str, Any]:
    """The test server's text channel."""
    return {
        "id": str(CHANNEL_ID),
        "type": 0,
        "guild_id": str(GUILD_ID),
        "name": "general",
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
    }


def _guild() -> dict[str, Any]:
    """The test server with its one text channel, as GUILD_CREATE carries it."""
    everyone = {
        "id": str(GUILD_ID),
        "name": "@everyone",
        "permissions": str((1 << 41) - 1),
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
    }
    return {
        "id": str(GUILD_ID),
        "name": "test server",
        "unavailable": False,
        "owner_id": "1",
        "channels": [_channel()],
        "threads": [],
        "roles": [everyone],
        "members": [],
        "member_count": 3,
        "emojis": [],
        "stickers": [],
        "features": [],
        "premium_tier": 0,
        "large": False,
        "joined_at": _now_iso(),
    }


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py only parses bodies whose content-type is exactly "application/json".
    out = web.Response(body=json.dumps(data).encode(), status=status, headers=headers)
    out.headers["Content-Type"] = "application/json"
    return out


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    if request.content_type.startswith("multipart/"):
        body: Any = {}
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":
                body = json.loads(await part.text())  # type: ignore[union-attr]
            else:
                files.append((part.filename or "file", bytes(await part.read())))  # type: ignore[union-attr]
        return body, files
    raw = await request.read()
    return (json.loads(raw) if raw else None), []


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()
