"""The bot's collaborators, built once by the composition root and handed to the bot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic_settings import BaseSettings
from redis.asyncio import Redis

from bot.disk_forget import DiskForget
from bot.guilds import Guilds
from bot.metrics import BotMetrics
from bot.mood_flow import Analyzer
from bot.pending import PendingChecks
from bot.recovery import CheckLedger, process_name
from bot.sessions import Sessions
from bot.settings import BotSettings
from bot.store import BotHistory, UserStore
from inference.api.client import JobClient
from inference.api.emotions import EmotionRegistry, load_registry
from inference.api.transport import Transport, open_transport
from recommender.links import LinkResolver
from recommender.mood import load_mood_map
from recommender.service import Recommender
from recommender.sources import build_catalogs


@dataclass(frozen=True, slots=True)
class Services:
    settings: BotSettings
    redis: Redis
    store: UserStore
    analyzer: Analyzer
    recommender: Recommender
    sessions: Sessions
    emotions: EmotionRegistry
    pending: PendingChecks
    ledger: CheckLedger
    guilds: Guilds
    disk_forget: DiskForget
    metrics: BotMetrics
    queue: Transport  # read for the metrics and the doctor; jobs go through ``analyzer``
    blobs: Redis | None = None  # photos and heatmaps, when a Redis of their own holds them


def build_services(
    settings: BotSettings,
    sources: Mapping[str, BaseSettings],
    redis: Redis,
    emotions: EmotionRegistry | None = None,
    blobs: Redis | None = None,
    links: LinkResolver | None = None,
) -> Services:
    """Wire Redis-backed stores, the queue client and the recommender.

    ``emotions`` defaults to the registry of the model in ``settings.model_dir`` (its manifest
    only). Raises :class:`recommender.mood.MoodMapError` for an invalid mood map or one that has
    no place for a class of the model, before any connection.
    """
    emotions = emotions or load_registry(settings.model_dir)
    mood_map = load_mood_map(settings.mood_map).require(emotions.names)  # first: a bad file stops start-up
    store = UserStore(
        redis,
        emotions.names,
        retention_days=settings.retention_days,
        max_entries=settings.history_max_entries,
        consent_version=settings.consent_version,
        salt=settings.user_salt.get_secret_value(),
        ask_share=settings.ask_share,
    )
    catalogs = build_catalogs(sources, redis, settings.redis_url)
    history = BotHistory(store, session_ttl_s=settings.session_idle_s)
    recommender = Recommender(mood_map, catalogs, history, links=links)
    sessions = Sessions(
        redis,
        recommender,
        idle_s=settings.session_idle_s,
        vote_ratio=settings.session_vote_ratio,
        hasher=store.hash,
    )
    return Services(
        settings,
        redis,
        store,
        JobClient(redis, settings, blobs=blobs, salt=settings.user_salt.get_secret_value()),
        recommender,
        sessions,
        emotions,
        PendingChecks(blobs or redis, store.hash),
        CheckLedger(blobs or redis, process_name()),
        Guilds(redis),
        DiskForget(redis, settings.forget_rewrite_s),
        BotMetrics(),
        open_transport(redis, settings, blobs=blobs),
        blobs,
    )
