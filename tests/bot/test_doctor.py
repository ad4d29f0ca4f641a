"""``moodring doctor`` against real redis-servers configured right and wrong, a real worker, and
the fake Discord (token, intents): each misconfiguration is its own line and a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.doctor import Report, diagnose
from bot.settings import BotSettings
from inference.api.contract import inflight_key
from inference.api.manifest import ModelManifest, model_id
from inference.api.settings import QueueSettings
from inference.api.transport import open_transport
from recommender.sources.deezer import DeezerSettings
from recommender.sources.itunes import ItunesSettings
from recommender.sources.odesli import OdesliSettings
from tests.bot.conftest import TEST_SALT, run_worker
from tests.conftest import spawn_redis
from tests.fakediscord import FakeDiscord
from tests.fakemusic import Fakes, FakeSpotify, spotify_settings

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "the-real-token"


@dataclass
class Deployment:
    """A compose-like pair of Redis: the durable one (AOF, noeviction) and the photo one (no disk)."""

    durable: str
    blobs: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]]

    def redis(self, *args: str) -> str:
        """One more redis-server with ``args``; its URL."""
        d = self.workdir / f"r{len(self.procs)}"
        d.mkdir()
        proc, url = spawn_redis(*args, workdir=d)
        self.procs.append(proc)
        return url


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    procs: list[subprocess.Popen[bytes]] = []
    (tmp_path / "durable").mkdir()
    (tmp_path / "blobs").mkdir()
    p1, durable = spawn_redis("--appendonly", "yes", "--save", "", workdir=tmp_path / "durable")
    p2, blobs = spawn_redis("--appendonly", "no", "--save", "", workdir=tmp_path / "blobs")
    procs += [p1, p2]
    yield Deployment(durable, blobs, tmp_path, procs)
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


@pytest.fixture
async def discord_api(fake: FakeDiscord) -> AsyncIterator[FakeDiscord]:
    fake.token = TOKEN
    yield fake


def _settings(dep: Deployment, fake: FakeDiscord, model_dir: Path, **overrides: Any) -> BotSettings:
    values: dict[str, Any] = {
        "discord_token": TOKEN,
        "user_salt": TEST_SALT + "-long-enough-for-the-doctor",
        "discord_api_base": fake.api_base,
        "redis_url": dep.durable,
        "blob_redis_url": dep.blobs,
        "model_dir": model_dir,
    }
    return BotSettings(**values | overrides)


async def _beat(url: str, model: str, name: str = "w-doctor") -> None:
    """A worker's heartbeat as the worker writes it (the worker's own protocol code)."""
    redis = Redis.from_url(url)
    try:
        await open_transport(redis, QueueSettings(redis_url=url)).heartbeat(name, model)
    finally:
        await redis.aclose()


# the keyless link sources off: no network in tests (one test points them at the fakes)
OFFLINE: dict[str, Any] = {
    "deezer": DeezerSettings(enabled=False),
    "itunes": ItunesSettings(enabled=False),
    "odesli": OdesliSettings(enabled=False),
}


def _by_status(report: Report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"ok": [], "warning": [], "problem": []}
    for c in report.checks:
        out[c.status].append(c.name)
    return out


async def test_a_healthy_deployment_is_all_ok(
    deployment: Deployment, discord_api: FakeDiscord, tiny_model_dir: Path
) -> None:
    settings = _settings(deployment, discord_api, tiny_model_dir)
    async with run_worker(deployment.durable, tiny_model_dir):
        report = await diagnose(settings, OFFLINE)
    lines = [c.line() for c in report.checks]
    assert report.healthy, lines
    assert _by_status(report)["warning"] == [] and _by_status(report)["problem"] == [], lines
    names = {c.name for c in report.checks}
    assert {
        "settings",
        "model files",
        "workers",
        "worker models",
        "discord token",
        "discord intents",
    } <= names
    assert any(n.startswith("blob redis") for n in names) and "music offline" in names


async def test_each_misconfiguration_is_one_problem_line(
    deployment: Deployment, discord_api: FakeDiscord, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = model_id(ModelManifest.load(tiny_model_dir / "manifest.json"))
    await _beat(deployment.durable, model)
    good = _settings(deployment, discord_api, tiny_model_dir)
    assert (await diagnose(good, OFFLINE)).healthy

    persisting_blobs = deployment.redis("--appendonly", "yes", "--save", "")
    evicting = deployment.redis("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")
    await _beat(evicting, model)
    corrupt = tmp_path / "corrupt-model"
    shutil.copytree(tiny_model_dir, corrupt)
    weights = corrupt / ModelManifest.load(corrupt / "manifest.json").weights_file
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    cases = {
        "blob redis": _settings(deployment, discord_api, tiny_model_dir, blob_redis_url=persisting_blobs),
        "memory policy": _settings(deployment, discord_api, tiny_model_dir, redis_url=evicting),
        "workers": _settings(deployment, discord_api, tiny_model_dir, redis_url=deployment.redis()),
        "model files": _settings(deployment, discord_api, corrupt),
        "discord token": _settings(deployment, discord_api, tiny_model_dir, discord_token="an-old-token"),
        "discord intents": _settings(deployment, discord_api, tiny_model_dir, watch_channels=True),
    }
    for what, settings in cases.items():
        report = await diagnose(settings, OFFLINE)
        problems = [c for c in report.checks if c.status == "problem"]
        assert not report.healthy, what
        assert len(problems) == 1 and what in problems[0].name, (what, [c.line() for c in problems])
    discord_api.app_flags = 1 << 19  # Message Content granted (the limited flag, under 100 servers)
    assert (await diagnose(cases["discord intents"], OFFLINE)).healthy


async def test_photos_on_the_durable_redis_and_an_unreachable_one_are_problems(
    deployment: Deployment, discord_api: FakeDiscord, tiny_model_dir: Path
) -> None:
    shared = _settings(deployment, discord_api, tiny_model_dir, blob_redis_url=None)
    report = await diagnose(shared, OFFLINE)
    assert [c.name for c in report.checks if c.status == "problem"] == ["blob redis", "workers"]
    gone = _settings(deployment, discord_api, tiny_model_dir, redis_url="redis://127.0.0.1:1/0")
    report = await diagnose(gone, OFFLINE)
    assert [c.name for c in report.checks if c.status == "problem"] == ["durable redis"]


async def test_a_stale_user_lock_and_dead_letters_are_reported(
    deployment: Deployment, discord_api: FakeDiscord, tiny_model_dir: Path
) -> None:
    await _beat(deployment.durable, model_id(ModelManifest.load(tiny_model_dir / "manifest.json")))
    redis = Redis.from_url(deployment.durable)
    try:
        await redis.set(inflight_key("someone"), "a-job-nobody-waits-for", ex=20)  # held 5 s already
        await redis.xadd("moodring:jobs:dead", {"job": "", "reason": "malformed"})
        report = await diagnose(_settings(deployment, discord_api, tiny_model_dir), OFFLINE)
    finally:
        await redis.aclose()
    warnings = {c.name: c.message for c in report.checks if c.status == "warning"}
    assert set(warnings) == {"user locks", "dead letters"}
    assert warnings["user locks"].startswith("1 whose job is settled or gone")
    assert report.healthy  # warnings don't fail the doctor


def _doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MOODRING_", "SPOTIPY_"))}
    return subprocess.run(
        [sys.executable, "-c", "from inference.cli import main; main()", "doctor", *args],
        env=base | {"PYTHONPATH": str(ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_the_command_exits_by_what_it_found_and_never_with_a_traceback(
    deployment: Deployment, discord_api: FakeDiscord, tiny_model_dir: Path, fakes: Fakes
) -> None:
    await _beat(deployment.durable, model_id(ModelManifest.load(tiny_model_dir / "manifest.json")))
    env = {
        "MOODRING_DISCORD_TOKEN": TOKEN,
        "MOODRING_USER_SALT": "x" * 40,
        "MOODRING_DISCORD_API_BASE": discord_api.api_base,
        "MOODRING_REDIS_URL": deployment.durable,
        "MOODRING_BLOB_REDIS_URL": deployment.blobs,
        "MOODRING_MODEL_DIR": str(tiny_model_dir),
        "MOODRING_DEEZER_API_BASE": fakes.url("deezer"),
        "MOODRING_ITUNES_API_BASE": fakes.url("itunes"),
        "MOODRING_ODESLI_API_BASE": fakes.url("odesli"),
    }
    healthy = await _run(env, "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    doc = json.loads(healthy.stdout)
    assert doc["healthy"] and {c["status"] for c in doc["checks"]} == {"ok"}
    lookups = {c["name"]: c["message"] for c in doc["checks"] if c["name"].startswith("links ")}
    assert set(lookups) == {"links deezer", "links itunes", "links odesli"}
    fakes.mode["odesli"] = "429"  # a keyless source failing: a warning, not a problem
    limited = await _run(env)
    assert limited.returncode == 0
    assert any(
        line.startswith("warning  links odesli: a test lookup failed") for line in limited.stdout.splitlines()
    )
    bad = await _run(env | {"MOODRING_DISCORD_TOKEN": "wrong"})
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert [line for line in bad.stdout.splitlines() if line.startswith("problem")] == [
        "problem  discord token: Discord rejected MOODRING_DISCORD_TOKEN (reset it in the Developer Portal)"
    ]
    unset = await _run(env | {"MOODRING_USER_SALT": "short"})
    assert unset.returncode == 1 and "Traceback" not in unset.stderr
    assert unset.stdout.startswith("problem  settings: MOODRING_USER_SALT")


async def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(_doctor, env, *args)


async def test_a_cluster_is_checked_node_by_node_with_its_slots(
    redis_cluster: Any, discord_api: FakeDiscord, tiny_model_dir: Path, deployment: Deployment
) -> None:
    settings = _settings(
        deployment,
        discord_api,
        tiny_model_dir,
        redis_url=redis_cluster.url,
        redis_cluster=True,
        blob_redis_url=None,
    )
    report = await diagnose(settings, OFFLINE)
    by_name = {c.name: c for c in report.checks}
    assert by_name["cluster"].status == "ok" and "all 16384 slots" in by_name["cluster"].message
    nodes = [n for n in by_name if n.startswith("durable redis ") and n.count(" ") == 2]
    assert len(nodes) >= 3  # every node, each with its own line
    assert by_name["blob redis"].status == "warning"  # photos share the cluster, which doesn't persist


async def test_spotify_credentials_are_tried_with_one_uncached_search(
    deployment: Deployment, discord_api: FakeDiscord, tiny_model_dir: Path, spotify: FakeSpotify
) -> None:
    """The music check through real spotipy against the fake Spotify: good credentials are ok,
    credentials Spotify refuses (expired, revoked) are a problem with what to do."""
    await _beat(deployment.durable, model_id(ModelManifest.load(tiny_model_dir / "manifest.json")))
    settings = _settings(deployment, discord_api, tiny_model_dir)
    with_spotify = OFFLINE | {"spotify": spotify_settings(spotify)}
    report = await diagnose(settings, with_spotify)
    checks = {c.name: c for c in report.checks}
    assert checks["music spotify"].status == "ok" and report.healthy
    spotify.token_ok = False  # the app's secret was reset in Spotify's dashboard:
    spotify.stale_tokens.add("fresh-1")  # the cached token is refused, and no new one is given
    report = await diagnose(settings, with_spotify)
    problems = [c for c in report.checks if c.status == "problem"]
    assert [c.name for c in problems] == ["music spotify"] and not report.healthy
    assert "a test search failed" in problems[0].message
