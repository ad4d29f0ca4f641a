"""Fixtures for driving the real bot: fake Discord, real Redis, a real worker with a tiny model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import pytest
from redis.asyncio import Redis

from bot.app import MoodringBot, use_api_base
from bot.services import build_services
from bot.settings import BotSettings
from inference.api.connect import connect
from inference.api.contract import hash_user
from recommender.links import LinkResolver
from tests.conftest import wait_for_worker
from tests.fakediscord import FakeDiscord

BotFactory = Callable[..., Awaitable[MoodringBot]]
TEST_SALT = "a-test-deployment-secret"


def uh(user_id: int) -> str:
    """A user's hash as the test bots compute it."""
    return hash_user(user_id, TEST_SALT)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    fd = FakeDiscord()
    await fd.start()
    old = discord.http.Route.BASE
    yield fd
    discord.http.Route.BASE = old
    await fd.stop()


@asynccontextmanager
async def run_worker(redis_url: str, tiny_model_dir: Path) -> AsyncIterator[None]:
    """An in-process worker (torch in its own single-thread executor) on the test Redis, up once it beat."""
    from inference.serve.checkpoint import load_model
    from inference.serve.detectors.full import FullFrameDetector
    from inference.serve.predictor import Predictor
    from inference.worker.service import Worker
    from inference.worker.settings import WorkerSettings

    model, manifest = load_model(tiny_model_dir)
    predictor = Predictor(model, manifest, FullFrameDetector(), bf16=False)
    settings = WorkerSettings(redis_url=redis_url, block_ms=50, job_timeout_s=60)
    w = Worker(Redis.from_url(redis_url), predictor, settings, name="w-bot-tests")
    task = asyncio.create_task(w.run())
    probe = Redis.from_url(redis_url)
    try:  # up once it has beaten: the bot refuses jobs at once while no worker is alive
        await wait_for_worker(probe)
    finally:
        await probe.aclose()
    try:
        yield
    finally:
        w.stop()
        await task
        await w.redis.aclose()
        predictor.close()


@pytest.fixture
async def worker(redis_server: str, tiny_model_dir: Path) -> AsyncIterator[None]:
    async with run_worker(redis_server, tiny_model_dir):
        yield


@asynccontextmanager
async def bot_factory(fake: FakeDiscord, redis_url: str, **defaults: Any) -> AsyncIterator[BotFactory]:
    """Start bot processes' worth of MoodringBot (each with its own Redis client) on the fake.

    ``defaults`` are settings for every bot (e.g. ``redis_cluster=True``); a call's own win.
    """
    running: list[tuple[MoodringBot, asyncio.Task[None], Redis]] = []

    async def factory(links: LinkResolver | None = None, **overrides: Any) -> MoodringBot:
        """A bot; ``links``: the link lookups its replies use (none: search links only)."""
        values: dict[str, Any] = {
            "discord_token": "fake-token",
            "user_salt": TEST_SALT,
            "discord_api_base": fake.api_base,
            "redis_url": redis_url,
            "cooldown_s": 0,
            "job_timeout_s": 60,
        }
        settings = BotSettings(**values | defaults | overrides)
        use_api_base(settings.discord_api_base)
        client = connect(settings.redis_url, settings.redis_cluster)
        bot = MoodringBot(build_services(settings, {}, client, links=links))
        task = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
        running.append((bot, task, client))
        await fake.wait_ready(len(running))
        await fake.wait_for(lambda: bot.is_ready(), 30, "bot ready")
        return bot

    try:
        yield factory
    finally:
        for bot, task, client in running:
            await bot.close()
            await task
            await client.aclose()


@pytest.fixture
async def start_bot(fake: FakeDiscord, redis_server: str, redis: Redis) -> AsyncIterator[BotFactory]:
    async with bot_factory(fake, redis_server) as factory:
        yield factory


def bot_process_env(fake: FakeDiscord, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a real ``python -m bot`` process against the fake and a test Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODRING_", "SPOTIPY_"))}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        MOODRING_DISCORD_TOKEN="fake-token",
        MOODRING_USER_SALT=TEST_SALT,
        MOODRING_DISCORD_API_BASE=fake.api_base,
        MOODRING_REDIS_URL=redis_url,
        # no network in tests: the keyless link sources off (tests/bot/test_music_platforms.py
        # drives them against fakes)
        MOODRING_ITUNES_ENABLED="false",
        MOODRING_DEEZER_ENABLED="false",
        MOODRING_ODESLI_ENABLED="false",
    )
    return env | extra
