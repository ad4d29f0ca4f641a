"""Settings of the bot process (``MOODRING_*`` environment variables or ``.env``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from inference.config import CommonSettings


class BotSettings(CommonSettings):
    """What ``moodring bot`` needs; the token is required and has no default."""

    discord_token: SecretStr
    redis_url: str = "redis://127.0.0.1:6379/0"
    dev_guild_id: int | None = Field(default=None, description="sync slash commands to this guild only")
    shard_count: int | None = Field(default=None, ge=1, description="None: ask Discord (AutoShardedBot)")
    job_timeout_s: float = Field(default=20.0, gt=0)
