"""``moodring doctor``: check a deployment end to end from its own settings.

One line per check, ``ok`` / ``warning`` / ``problem`` with what to do; exit 0 only when
nothing is a problem. Reads the bot's settings (which include the queue's), talks to both
Redis, Discord's API and the music sources, and hashes the model files; changes nothing but
a test search's cache entry. ``--json`` prints the same as one JSON document.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import click
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.settings import BotSettings
from inference.api.connect import connect
from inference.api.health import NodeFacts, node_facts
from inference.api.manifest import MANIFEST_FILE, ModelManifest, default_model_dir, model_id, sha256_file
from inference.api.settings import describe_error
from inference.api.transport import TRANSIENT, Transport, connect_blobs, open_transport
from recommender.links import SourceFailed
from recommender.mood import MoodPoint
from recommender.sources import build_catalogs, build_link_sources, load_source_settings

log = logging.getLogger(__name__)

Status = Literal["ok", "warning", "problem"]
UNREACHABLE: tuple[type[Exception], ...] = (RedisError, *TRANSIENT, OSError)
DISCORD_API = "https://discord.com/api/v10"
MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)  # GATEWAY_MESSAGE_CONTENT (verified) or _LIMITED
TIMEOUT_S = 10.0
PROBE_LINK = "https://www.deezer.com/track/3135556"  # a track every link source knows


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str

    def line(self) -> str:
        return f"{self.status:<8} {self.name}: {self.message}"


class Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, status: Status, message: str) -> None:
        self.checks.append(Check(name, status, message))

    @property
    def healthy(self) -> bool:
        return all(c.status != "problem" for c in self.checks)


async def diagnose(settings: BotSettings, sources: Mapping[str, BaseSettings]) -> Report:
    """Every check, in the order an operator would fix them."""
    report = Report()
    salt = settings.user_salt.get_secret_value()
    report.add(
        "settings",
        "ok" if len(salt) >= 32 else "warning",
        f"parsed; MOODRING_USER_SALT has {len(salt)} characters"
        + ("" if len(salt) >= 32 else " (use 32 or more random ones)"),
    )
    _model_files(report, settings.model_dir)
    redis = connect(settings.redis_url, settings.redis_cluster, socket_timeout=TIMEOUT_S)
    blobs = connect_blobs(settings, socket_timeout=TIMEOUT_S)
    try:
        durable = await _guarded(report, "durable redis", lambda: _durable(report, redis))
        if durable:
            await _guarded(report, "blob redis", lambda: _blobs(report, settings, blobs, durable))
            if settings.redis_cluster:
                await _guarded(report, "cluster", lambda: _cluster(report, redis))
            queue = open_transport(redis, settings, blobs=blobs)
            await _guarded(report, "queue", lambda: _queue(report, settings, queue))
            await _guarded(report, "music", lambda: _music(report, settings, sources, redis))
        await _discord(report, settings)
    finally:
        await redis.aclose()
        if blobs is not None:
            await blobs.aclose()
    return report


async def _guarded(report: Report, name: str, run: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await run()
    except UNREACHABLE as exc:
        report.add(name, "problem", f"unreachable or refused: {type(exc).__name__}: {exc}")
        return None


def _model_files(report: Report, model_dir: Path | None) -> None:
    where = model_dir or default_model_dir()
    try:
        manifest = ModelManifest.load(where / MANIFEST_FILE)
    except (OSError, ValidationError) as exc:
        report.add("model files", "problem", f"no readable manifest in {where}: {type(exc).__name__}")
        return
    files = [(manifest.weights_file, manifest.weights_sha256)]
    if manifest.projection_file:
        files.append((manifest.projection_file, manifest.projection_sha256))
    for name, expected in files:
        path = where / name
        if not path.is_file():
            report.add("model files", "problem", f"{path} is missing")
            return
        if sha256_file(path) != expected:
            report.add("model files", "problem", f"{path} does not match its manifest's sha256 (replace it)")
            return
    report.add("model files", "ok", f"model {model_id(manifest)}: {len(files)} file(s) match the manifest")


async def _durable(report: Report, redis: Redis) -> list[NodeFacts]:
    await redis.ping()
    nodes = await node_facts(redis)
    for n in nodes:
        where = f"durable redis {n.node}"
        report.add(where, "ok", f"reachable, Redis {n.version}")
        if n.policy != "noeviction":
            report.add(
                where + " memory policy",
                "problem",
                f"maxmemory-policy is {n.policy}: Redis may evict jobs, consent and history when full; "
                "set maxmemory-policy noeviction",
            )
        else:
            report.add(where + " memory policy", "ok", "noeviction")
        if n.aof:
            report.add(
                where + " persistence", "ok", "AOF on (history, consent and sessions survive a restart)"
            )
        elif n.save_points:
            report.add(
                where + " persistence",
                "warning",
                "snapshots only: a crash loses the writes since the last one",
            )
        else:
            report.add(
                where + " persistence", "warning", "none: a restart loses history, consent and sessions"
            )
    return nodes


async def _blobs(
    report: Report, settings: BotSettings, blobs: Redis | None, durable: list[NodeFacts]
) -> None:
    if blobs is None:
        if any(n.persisting for n in durable):
            report.add(
                "blob redis",
                "problem",
                "photos share the durable Redis, which writes to disk: set MOODRING_BLOB_REDIS_URL "
                "to a Redis with --appendonly no --save ''",
            )
        else:
            report.add(
                "blob redis",
                "warning",
                "photos share the main Redis (it doesn't persist: fine for development)",
            )
        return
    await blobs.ping()
    for n in await node_facts(blobs):
        if n.persisting:
            what = "AOF on" if n.aof else f"save points '{n.save_points}'"
            report.add(
                f"blob redis {n.node}",
                "problem",
                f"writes to disk ({what}): photos could reach it; run it with --appendonly no --save ''",
            )
        elif n.save_points is None:
            report.add(
                f"blob redis {n.node}", "warning", "AOF off; CONFIG is refused, so save points are unknown"
            )
        else:
            report.add(f"blob redis {n.node}", "ok", f"reachable, Redis {n.version}, never writes to disk")


async def _cluster(report: Report, redis: Redis) -> None:
    info: Any = await redis.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    state, slots = str(info.get("cluster_state")), int(info.get("cluster_slots_assigned", 0))
    if state == "ok" and slots == 16384:
        report.add(
            "cluster", "ok", f"state ok, all 16384 slots assigned, {info.get('cluster_known_nodes')} nodes"
        )
    else:
        report.add(
            "cluster", "problem", f"state {state}, {slots} of 16384 slots assigned: fix the cluster first"
        )


async def _queue(report: Report, settings: BotSettings, queue: Transport) -> None:
    backlog = (await queue.backlog()).total
    share = backlog / settings.max_backlog
    report.add(
        "queue backlog",
        "ok" if share < 0.8 else "warning",
        f"{backlog} jobs of the cap {settings.max_backlog}" + ("" if share < 0.8 else ": add workers"),
    )
    dead = await queue.dead_letter_count()
    report.add(
        "dead letters",
        "ok" if dead == 0 else "warning",
        "none" if dead == 0 else f"{dead} kept (a week): read them with {queue.dead_letter_command()}",
    )
    workers = await queue.alive_workers(settings.worker_alive_s)
    if not workers:
        report.add(
            "workers",
            "problem",
            f"none beat in the last {settings.worker_alive_s:g} s: every check is answered "
            "'analysis is down'; start a worker (moodring worker)",
        )
    else:
        report.add("workers", "ok", f"{len(workers)} alive")
        expected = _bot_model(settings.model_dir)
        other = sorted({m or "unknown" for m in workers.values() if m != expected})
        if expected and other:
            report.add(
                "worker models",
                "warning",
                f"some workers serve model {', '.join(other)}, the bot's manifest is {expected}: "
                "finish the deploy so both use the same model",
            )
        elif expected:
            report.add("worker models", "ok", f"all serve {expected}, as the bot's manifest")
    stale = await queue.stale_locks((int(settings.job_timeout_s) + 5) * 1000)
    report.add(
        "user locks",
        "ok" if not stale else "warning",
        "no stale 'one photo at a time' lock"
        if not stale
        else f"{stale} whose job is settled or gone (after a Redis restart); each clears at its "
        "user's next photo",
    )


def _bot_model(model_dir: Path | None) -> str:
    try:
        return model_id(ModelManifest.load((model_dir or default_model_dir()) / MANIFEST_FILE))
    except (OSError, ValidationError):
        return ""


async def _music(
    report: Report, settings: BotSettings, sources: Mapping[str, BaseSettings], redis: Redis
) -> None:
    for catalog in build_catalogs(sources, redis, settings.redis_url):
        probe = getattr(catalog, "probe", None)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                if probe is not None:
                    found = await probe()
                else:
                    found = len(await catalog.candidates(MoodPoint(0.5, 0.5), 5))
        except Exception as exc:  # any way a source can fail is this check's finding
            report.add(
                f"music {catalog.name}", "problem", f"a test search failed: {type(exc).__name__}: {exc}"
            )
            continue
        report.add(
            f"music {catalog.name}", "ok" if found else "warning", f"a test search found {found} tracks"
        )
    for source in build_link_sources(sources, redis, settings.redis_url):
        # keyless: a failure costs exact links (replies use search links), not the reply
        try:
            async with asyncio.timeout(TIMEOUT_S), aiohttp.ClientSession() as http:
                answer = await source.find(http, "Daft Punk", "One More Time", {"deezer": PROBE_LINK})
        except (SourceFailed, aiohttp.ClientError, TimeoutError) as exc:
            report.add(
                f"links {source.name}",
                "warning",
                f"a test lookup failed ({exc}): replies use search links until it answers "
                f"(or set MOODRING_{source.name.upper()}_ENABLED=false)",
            )
            continue
        known = ", ".join(sorted(answer.links)) if answer else "nothing"
        report.add(f"links {source.name}", "ok", f"a test lookup found {known}")


async def _discord(report: Report, settings: BotSettings) -> None:
    base = (settings.discord_api_base or DISCORD_API).rstrip("/")
    headers = {"Authorization": f"Bot {settings.discord_token.get_secret_value()}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http:
            async with http.get(f"{base}/users/@me", headers=headers) as resp:
                if resp.status == 401:
                    report.add(
                        "discord token",
                        "problem",
                        "Discord rejected MOODRING_DISCORD_TOKEN (reset it in the Developer Portal)",
                    )
                    return
                resp.raise_for_status()
                me = await resp.json()
            report.add("discord token", "ok", f"valid, the bot is {me.get('username')} ({me.get('id')})")
            async with http.get(f"{base}/oauth2/applications/@me", headers=headers) as resp:
                resp.raise_for_status()
                flags = int((await resp.json()).get("flags") or 0)
    except (aiohttp.ClientError, TimeoutError) as exc:
        report.add("discord", "problem", f"can't reach {base}: {type(exc).__name__}: {exc}")
        return
    if settings.watch_channels and not flags & MESSAGE_CONTENT_FLAGS:
        report.add(
            "discord intents",
            "problem",
            "MOODRING_WATCH_CHANNELS is on but the Message Content intent is off: turn on 'Message Content "
            "Intent' (your app → Bot → Privileged Gateway Intents) or unset MOODRING_WATCH_CHANNELS",
        )
    else:
        granted = "Message Content granted (selfie channels)" if settings.watch_channels else "none needed"
        report.add("discord intents", "ok", f"privileged intents: {granted}")


class _SettingsProblem(Exception):
    pass


def _load(cls: type[BaseSettings]) -> BaseSettings:
    try:
        return cls()
    except ValidationError as exc:
        raise _SettingsProblem(describe_error(exc, cls)) from None


def render(report: Report, as_json: bool) -> str:
    if as_json:
        return json.dumps({"healthy": report.healthy, "checks": [asdict(c) for c in report.checks]}, indent=2)
    counts = {s: sum(c.status == s for c in report.checks) for s in ("ok", "warning", "problem")}
    summary = ("healthy" if report.healthy else "unhealthy") + (
        f": {counts['ok']} ok, {counts['warning']} warnings, {counts['problem']} problems"
    )
    return "\n".join([*(c.line() for c in report.checks), summary])


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of lines.")
def doctor_command(as_json: bool) -> None:
    """Check this deployment (Redis, workers, model, Discord, music); exit 0 when nothing is a problem."""
    logging.basicConfig(level=logging.ERROR)
    try:
        settings = BotSettings()  # type: ignore[call-arg]
        sources = load_source_settings(lambda cls: _load(cls))
    except _SettingsProblem as exc:
        report = Report()
        report.add("settings", "problem", str(exc))
        click.echo(render(report, as_json))
        sys.exit(1)
    except ValidationError as exc:
        report = Report()
        report.add("settings", "problem", describe_error(exc, BotSettings))
        click.echo(render(report, as_json))
        sys.exit(1)
    report = asyncio.run(diagnose(settings, sources))
    click.echo(render(report, as_json))
    sys.exit(0 if report.healthy else 1)
