"""The bot's collaborators, built once by the composition root and handed to the bot."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from bot.mood_flow import Analyzer
from bot.sessions import Sessions
from bot.settings import BotSettings
from bot.store import UserStore
from inference.jobs import JobClient
from recommender.mood import load_mood_map
from recommender.service import Recommender, RedisHistory, build_catalogs
from recommender.settings import SpotifySettings


@dataclass(frozen=True, slots=True)
class Services:
    settings: BotSettings
    redis: Redis
    store: UserStore
    analyzer: Analyzer
    recommender: Recommender
    sessions: Sessions


def build_services(settings: BotSettings, spotify: SpotifySettings, redis: Redis) -> Services:
    """Wire Redis-backed stores, the queue client and the recommender.

    Raises :class:`recommender.mood.MoodMapError` for an invalid mood map, before any connection.
    """
    store = UserStore(
        redis,
        retention_days=settings.retention_days,
        max_entries=settings.history_max_entries,
        consent_version=settings.consent_version,
    )
    mood_map = load_mood_map(settings.mood_map)  # first: a bad file stops start-up before anything else
    catalogs = build_catalogs(spotify, redis, settings.redis_url)
    recommender = Recommender(mood_map, catalogs, RedisHistory(redis))
    sessions = Sessions(
        redis, recommender, idle_s=settings.session_idle_s, vote_ratio=settings.session_vote_ratio
    )
    return Services(settings, redis, store, JobClient(redis, settings), recommender, sessions)
