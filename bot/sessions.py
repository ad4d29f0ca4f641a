"""Group listening sessions: a channel's shared mood drives a shared queue. Plain Redis, no Discord.

All keys of one session share the hash tag ``{<channel id>}`` (one cluster slot, so the
Lua scripts and MULTI blocks below are atomic) and a sliding TTL: every change pushes the
expiry of all of them ``idle_s`` into the future, so a forgotten session disappears by
itself. Membership lives both in the session (``members``) and under the user's own hash
tag (``moodring:user:{<user hash>}:sessions``) so ``/mood forget`` can find and leave them.
The user's index is on another slot, so it is written beside the session's transaction, not
in it: it is a hint (an entry whose session is gone is pruned when read), the session's own
``members`` set is the truth.

Keys (prefix ``moodring:session:{<channel>}``): ``state`` (hash: host, strategy, length,
message, blend), ``members`` (set of user ids), ``moods`` (hash user id → JSON list
of mood points, one per face), ``queue`` (list of JSON tracks; index 0 is playing now),
``votes`` (set of user ids voting to skip the current track).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.store import as_text, user_prefix
from inference.api.contract import hash_user
from recommender.mood import MoodPoint, Strategy, blend
from recommender.service import Recommender

log = logging.getLogger(__name__)

REBUILD_DISTANCE = 0.05  # rebuild the queue when the group's blend moves further than this

# KEYS: state members votes queue; ARGV: user, ratio. Returns {code, votes, needed}.
VOTE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', 0, 0} end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return {'not_member', 0, 0} end
redis.call('SADD', KEYS[3], ARGV[1])
local votes = redis.call('SCARD', KEYS[3])
local members = redis.call('SCARD', KEYS[2])
local needed = math.floor(members * tonumber(ARGV[2])) + 1
if votes >= needed then
  redis.call('LPOP', KEYS[4])
  redis.call('DEL', KEYS[3])
  return {'skipped', votes, needed}
end
return {'voted', votes, needed}
"""


class SessionError(Exception):
    """A session action that can't be done; ``code`` picks the wording in bot.texts."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class QueuedTrack:
    title: str
    artists: tuple[str, ...]
    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class SessionView:
    """Everything the session message shows."""

    channel_id: int
    host_id: int
    strategy: Strategy
    members: tuple[int, ...]
    mood_line: str
    queue: tuple[QueuedTrack, ...]
    votes: int
    votes_needed: int
    message_id: int | None

    @property
    def now_playing(self) -> QueuedTrack | None:
        return self.queue[0] if self.queue else None


def session_prefix(channel_id: int) -> str:
    return f"moodring:session:{{{channel_id}}}"


class Sessions:
    def __init__(
        self,
        redis: Redis,
        recommender: Recommender,
        idle_s: int = 3600,
        vote_ratio: float = 0.5,
        hasher: Callable[[int], str] = hash_user,
    ) -> None:
        self.redis = redis
        self.recommender = recommender
        self.hasher = hasher  # the store's: user ids become the deployment's salted hashes
        self.idle_s = idle_s
        self.vote_ratio = vote_ratio
        self._vote = redis.register_script(VOTE_LUA)

    # keys -------------------------------------------------------------------------------
    def _k(self, channel_id: int, name: str) -> str:
        return f"{session_prefix(channel_id)}:{name}"

    def _all(self, channel_id: int) -> list[str]:
        return [self._k(channel_id, n) for n in ("state", "members", "moods", "queue", "votes", "recs")]

    def _user_key(self, user_id: int) -> str:
        return f"{user_prefix(self.hasher(user_id))}:sessions"

    async def _touch(self, channel_id: int) -> None:
        """Keep the session, and each member's index entry for it, alive for ``idle_s`` more."""
        members = await self.redis.smembers(self._k(channel_id, "members"))
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in self._all(channel_id):
                pipe.expire(key, self.idle_s)
            await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:  # members' slots
            for m in members:  # an index never outlives the sessions it names by long
                pipe.expire(self._user_key(int(m)), self.idle_s + 60, gt=True)
                pipe.expire(self._user_key(int(m)), self.idle_s + 60, nx=True)
            await pipe.execute()

    # lifecycle --------------------------------------------------------------------------------
    async def start(self, channel_id: int, host_id: int, strategy: Strategy, length: int) -> SessionView:
        await self._prune_index(host_id)
        created = await self.redis.hsetnx(self._k(channel_id, "state"), "host", str(host_id))
        if not created:
            raise SessionError("session_exists")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._k(channel_id, "state"),
                mapping={
                    "strategy": strategy,
                    "length": str(length),
                    "created": str(time.time()),
                },
            )
            pipe.sadd(self._k(channel_id, "members"), str(host_id))
            await pipe.execute()
        await self.redis.sadd(self._user_key(host_id), str(channel_id))
        await self._touch(channel_id)
        return await self.view(channel_id)

    async def set_message(self, channel_id: int, message_id: int) -> None:
        await self.redis.hset(self._k(channel_id, "state"), "message", str(message_id))

    async def end(self, channel_id: int, user_id: int, can_manage: bool = False) -> None:
        await self._require_host(channel_id, user_id, can_manage)
        await self._delete(channel_id)

    async def _require_host(self, channel_id: int, user_id: int, can_manage: bool) -> None:
        """Raise ``no_session`` if there is none, ``not_host`` unless host or a manager."""
        if not await self.is_host(channel_id, user_id) and not can_manage:
            raise SessionError("not_host")

    async def _delete(self, channel_id: int) -> None:
        members = await self.redis.smembers(self._k(channel_id, "members"))
        await self.redis.delete(*self._all(channel_id))
        async with self.redis.pipeline(transaction=False) as pipe:  # members' slots
            for m in members:
                pipe.srem(self._user_key(int(m)), str(channel_id))
            await pipe.execute()

    # membership -------------------------------------------------------------------------------
    async def join(self, channel_id: int, user_id: int) -> bool:
        """Add a member; False if they already were one."""
        await self._state(channel_id)
        await self._prune_index(user_id)
        added = await self.redis.sadd(self._k(channel_id, "members"), str(user_id))
        await self.redis.sadd(self._user_key(user_id), str(channel_id))
        await self._touch(channel_id)
        return bool(added)

    async def leave(self, channel_id: int, user_id: int) -> bool:
        """Remove a member (their mood and vote too); the last one out ends the session."""
        state = await self._state(channel_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(self._k(channel_id, "members"), str(user_id))
            pipe.hdel(self._k(channel_id, "moods"), str(user_id))
            pipe.srem(self._k(channel_id, "votes"), str(user_id))
            pipe.smembers(self._k(channel_id, "members"))  # who is left, read in the same MULTI
            removed, _, _, rest = await pipe.execute()
        await self.redis.srem(self._user_key(user_id), str(channel_id))
        if not rest:
            await self._delete(channel_id)
        else:
            if int(state["host"]) == user_id:  # the host passes on (to the lowest member id: one rule)
                await self.redis.hset(self._k(channel_id, "state"), "host", str(min(int(m) for m in rest)))
            await self._touch(channel_id)
            if removed:
                await self._rebuild_if_moved(channel_id)
        return bool(removed)

    async def _prune_index(self, user_id: int) -> None:
        """Drop sessions that expired by themselves from the user's index."""
        for channel_id in await self.sessions_of(user_id):
            if not await self.exists(channel_id):
                await self.redis.srem(self._user_key(user_id), str(channel_id))

    async def is_host(self, channel_id: int, user_id: int) -> bool:
        return int((await self._state(channel_id))["host"]) == user_id

    async def is_member(self, channel_id: int, user_id: int) -> bool:
        return bool(await self.redis.sismember(self._k(channel_id, "members"), str(user_id)))

    async def sessions_of(self, user_id: int) -> list[int]:
        return [int(c) for c in await self.redis.smembers(self._user_key(user_id))]

    # moods and the queue --------------------------------------------------------------------------
    async def check_in(
        self, channel_id: int, user_id: int, faces: Sequence[Mapping[str, float]]
    ) -> SessionView:
        """Record a member's mood: one point per face (a group photo counts each face)."""
        if not await self.is_member(channel_id, user_id):
            raise SessionError("not_member")
        mood_map = self.recommender.mood_map
        points = [mood_map.point_for(p) for p in faces]
        labels = [max(p, key=p.__getitem__) for p in faces]
        payload = json.dumps([[pt.valence, pt.arousal, lab] for pt, lab in zip(points, labels, strict=True)])
        await self.redis.hset(self._k(channel_id, "moods"), str(user_id), payload)
        await self._touch(channel_id)
        await self._rebuild_if_moved(channel_id)
        return await self.view(channel_id)

    async def _moods(self, channel_id: int) -> list[tuple[MoodPoint, str]]:
        raw = await self.redis.hvals(self._k(channel_id, "moods"))
        return [(MoodPoint(v, a), lab) for blob in raw for v, a, lab in json.loads(blob)]

    async def _rebuild_if_moved(self, channel_id: int) -> None:
        state = await self._state(channel_id)
        moods = await self._moods(channel_id)
        if not moods:
            return
        target = blend([p for p, _ in moods])
        if state.get("blend"):
            v, a = (float(x) for x in state["blend"].split(","))
            if MoodPoint(v, a).distance(target) <= REBUILD_DISTANCE and await self.redis.llen(
                self._k(channel_id, "queue")
            ):
                return
        emotion = self.recommender.mood_map.nearest(target)
        strategy: Strategy = state["strategy"]  # type: ignore[assignment]
        recs = await self.recommender.recommend(
            emotion, strategy=strategy, n=int(state["length"]), start=target, user=f"session:{channel_id}"
        )
        tracks = [json.dumps([r.track.title, list(r.track.artists), r.track.url, r.reason]) for r in recs]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k(channel_id, "queue"), self._k(channel_id, "votes"))
            if tracks:
                pipe.rpush(self._k(channel_id, "queue"), *tracks)
            pipe.hset(self._k(channel_id, "state"), "blend", f"{target.valence:.4f},{target.arousal:.4f}")
            await pipe.execute()
        await self._touch(channel_id)
        log.info("session %s queue rebuilt for %s (%d tracks)", channel_id, emotion, len(tracks))

    # skipping --------------------------------------------------------------------------------
    async def vote_skip(self, channel_id: int, user_id: int) -> tuple[str, int, int]:
        """Members vote; more than ``vote_ratio`` of them skips. Returns (outcome, votes, needed)."""
        keys = [self._k(channel_id, n) for n in ("state", "members", "votes", "queue")]
        code, votes, needed = await self._vote(keys=keys, args=[str(user_id), str(self.vote_ratio)])
        code = code.decode() if isinstance(code, bytes) else str(code)
        if code == "gone":
            raise SessionError("no_session")
        if code == "not_member":
            raise SessionError("not_member")
        await self._touch(channel_id)
        if code == "skipped":
            await self._refill(channel_id)
        return code, int(votes), int(needed)

    async def host_skip(self, channel_id: int, user_id: int, can_manage: bool = False) -> None:
        await self._require_host(channel_id, user_id, can_manage)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpop(self._k(channel_id, "queue"))
            pipe.delete(self._k(channel_id, "votes"))
            await pipe.execute()
        await self._touch(channel_id)
        await self._refill(channel_id)

    async def _refill(self, channel_id: int) -> None:
        if await self.redis.llen(self._k(channel_id, "queue")) == 0:
            await self.redis.hdel(self._k(channel_id, "state"), "blend")
            await self._rebuild_if_moved(channel_id)

    # reading -------------------------------------------------------------------------------
    async def _state(self, channel_id: int) -> dict[str, str]:
        raw = await self.redis.hgetall(self._k(channel_id, "state"))
        if not raw or b"strategy" not in raw:
            raise SessionError("no_session")
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def exists(self, channel_id: int) -> bool:
        return bool(await self.redis.exists(self._k(channel_id, "state")))

    async def view(self, channel_id: int) -> SessionView:
        state = await self._state(channel_id)
        async with self.redis.pipeline(transaction=True) as pipe:  # one snapshot (one slot, cluster too)
            pipe.smembers(self._k(channel_id, "members"))
            pipe.lrange(self._k(channel_id, "queue"), 0, -1)
            pipe.scard(self._k(channel_id, "votes"))
            members_raw, queue_raw, votes = await pipe.execute()
        members = tuple(sorted(int(m) for m in members_raw))
        queue = tuple(QueuedTrack(t, tuple(a), u, r) for t, a, u, r in (json.loads(x) for x in queue_raw))
        # one label per person who checked in (their own face, the first), not one per face
        per_person = [json.loads(blob) for blob in await self.redis.hvals(self._k(channel_id, "moods"))]
        people = [faces[0][2] for faces in per_person if faces]
        return SessionView(
            channel_id=channel_id,
            host_id=int(state["host"]),
            strategy=state["strategy"],  # type: ignore[arg-type]
            members=members,
            mood_line=mood_line(len(members), people, state["strategy"]),
            queue=queue,
            votes=int(votes),
            votes_needed=int(len(members) * self.vote_ratio) + 1,
            message_id=int(state["message"]) if state.get("message") else None,
        )


STRATEGY_WORDS = {"match": "matching it", "lift": "lifting gently", "calm": "calming things down"}
NUMBERS = {1: "one", 2: "two", 3: "three"}


def mood_line(members: int, labels: Sequence[str], strategy: str) -> str:
    """E.g. ``"3 people: mostly happy, one sad → lifting gently"``."""
    people = f"{members} {'person' if members == 1 else 'people'}"
    if not labels:
        return f"{people}: nobody has checked in yet (use /mood check)"
    counts = Counter(labels).most_common()
    top, n = counts[0]
    parts = [f"mostly {top}" if n > 1 or len(counts) == 1 else top]
    for label, k in counts[1:3]:
        parts.append(f"{NUMBERS.get(k, str(k))} {label}")
    return f"{people}: {', '.join(parts)} → {STRATEGY_WORDS.get(strategy, strategy)}"
