"""Settings of the bot process (``MOODRING_*`` environment variables or ``.env``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from inference.api.settings import QueueSettings


class BotSettings(QueueSettings):
    """What ``moodring bot`` needs; the token is required and has no default.

    The queue settings (Redis URL, stream, backlog cap, job timeout) are shared with the
    workers, so both sides read the same variables.
    """

    discord_token: SecretStr
    user_salt: SecretStr = Field(
        min_length=16,
        description="per-deployment secret mixed into user hashes (keys, logs), so they can't be "
        "matched to public Discord ids; keep it stable (changing it orphans everyone's data)",
    )
    discord_api_base: str | None = Field(
        default=None, description="REST base URL, e.g. a rate-limit proxy; default: discord.com/api/v10"
    )
    dev_guild_id: int | None = Field(default=None, description="sync slash commands to this guild only")
    shard_count: int | None = Field(default=None, ge=1, description="None: ask Discord (AutoShardedBot)")
    cooldown_s: float = Field(default=10.0, ge=0, description="per-user pause between mood checks")
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="refused before download")
    max_concurrent_checks: int = Field(default=16, ge=1, description="photos in flight per bot process")
    retention_days: int = Field(default=90, ge=1)
    history_max_entries: int = Field(default=1000, ge=10)
    consent_version: int = Field(default=1, ge=1)
    mood_map: Path | None = Field(default=None, description="a custom emotion → music mood map (JSON)")
    session_idle_s: int = Field(default=3600, ge=1, description="a session with no activity ends")
    components_v2: bool = Field(
        default=True, description="the reading as a Components V2 layout; false: the classic embed"
    )
    watch_channels: bool = Field(
        default=False,
        description="selfie channels (/moodring watch): needs the privileged Message Content intent, "
        "switched on in the Developer Portal",
    )
    session_vote_ratio: float = Field(
        default=0.5, gt=0, le=1, description="skip when more than this share votes"
    )
    ask_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="of the readings of users who help improve readings, the random share whose reply "
        "asks 'Did I get it right?' (the unbiased labels the community adapter is weighted and judged by)",
    )
    warm_links: bool = Field(
        default=True,
        description="look up the built-in catalog's track links in the background, at half the link "
        "sources' rate limits, so replies find them cached (recommender.links)",
    )
    bot_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve the bot's Prometheus metrics here (bot.metrics)"
    )
    forget_rewrite_s: float = Field(
        default=600.0,
        ge=10,
        description="after /mood forget, the durable Redis rewrites its files (AOF, snapshot) at most "
        "this often, so forgotten data leaves the disk within about this long (bot.disk_forget)",
    )
    # the same variables the workers read (inference.worker.settings), for what /mood privacy says
    adapt_min_people: int = Field(default=20, ge=1)
    adapt_withdrawn_s: float = Field(default=3_600.0, gt=0)
