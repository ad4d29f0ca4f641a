"""The bot's collaborators, built once by the composition root and handed to the bot."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from bot.mood_flow import Analyzer
from bot.settings import BotSettings
from bot.store import UserStore
from inference.jobs import JobClient
from recommender.catalogs import load_offline_catalog
from recommender.mood import load_mood_map
from recommender.service import Recommender, RedisHistory


@dataclass(frozen=True, slots=True)
class Services:
    settings: BotSettings
    redis: Redis
    store: UserStore
    analyzer: Analyzer
    recommender: Recommender


def build_services(settings: BotSettings, redis: Redis) -> Services:
    """Wire Redis-backed stores, the queue client and the recommender (validates the mood map)."""
    store = UserStore(
        redis,
        retention_days=settings.retention_days,
        max_entries=settings.history_max_entries,
        consent_version=settings.consent_version,
    )
    recommender = Recommender(load_mood_map(), [load_offline_catalog()], RedisHistory(redis))
    return Services(settings, redis, store, JobClient(redis, settings), recommender)
