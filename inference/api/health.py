"""What a Redis node says about itself (version, memory, eviction, persistence), for the bot's
metrics and ``moodring doctor``. Torch-free; one ``INFO`` and one ``CONFIG GET`` per node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError


@dataclass(frozen=True, slots=True)
class NodeFacts:
    node: str  # host:port
    version: str
    used_bytes: int
    max_bytes: int  # 0: no limit
    policy: str  # maxmemory-policy
    aof: bool
    save_points: str | None  # CONFIG GET save; None: CONFIG refused (managed Redis)
    cluster: bool

    @property
    def persisting(self) -> bool:
        """Anything of this node's data reaches its disk (AOF, or snapshot save points)."""
        return self.aof or bool(self.save_points)


async def node_facts(redis: Redis) -> list[NodeFacts]:
    """Each node's facts: one for a plain Redis, every node of a cluster."""
    if isinstance(redis, RedisCluster):
        return [await _facts(redis, f"{n.host}:{n.port}", n) for n in redis.get_nodes()]
    kwargs = redis.connection_pool.connection_kwargs
    return [await _facts(redis, f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}", None)]


async def _facts(redis: Any, name: str, node: Any) -> NodeFacts:
    target = {"target_nodes": node} if node is not None else {}
    info: dict[str, Any] = await redis.info(**target)
    try:
        config: Any = await redis.config_get("save", **target)
        save: str | None = str(config.get("save", "")).strip()
    except RedisError:
        save = None
    return NodeFacts(
        node=name,
        version=str(info.get("redis_version", "?")),
        used_bytes=int(info.get("used_memory", 0)),
        max_bytes=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "?")),
        aof=bool(int(info.get("aof_enabled", 0))),
        save_points=save,
        cluster=bool(int(info.get("cluster_enabled", 0))),
    )
