"""`/mood check` as a plain async function: consent → cooldown → worker (+ prior) → store → music.

The cog only turns an interaction into :func:`check_mood` and renders the
:class:`CheckOutcome`; everything here is testable without Discord.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.store import NoConsent, UserStore
from inference.api.contract import FaceResult, JobResult
from inference.api.errors import MoodringError
from recommender.mood import Strategy
from recommender.platforms import Choice
from recommender.ranking import Recommendation
from recommender.service import Recommender

log = logging.getLogger(__name__)


class DownloadFailed(MoodringError):
    """The attachment could not be fetched from Discord's CDN."""

    code = "download_failed"


class Analyzer(Protocol):
    """The submit side of the queue (:class:`inference.api.client.JobClient`)."""

    async def resume(self, user_id: int | str, job_id: str, wait_s: float) -> JobResult: ...

    async def analyze(
        self,
        user_id: int | str,
        data: bytes,
        want_heatmap: bool = True,
        timeout_s: float | None = None,
        prior: Mapping[str, float] | None = None,
        baseline: Mapping[str, float] | None = None,
        job_id: str | None = None,
    ) -> JobResult: ...


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What the bot shows: either an error code (wording in bot.texts) or the full answer."""

    error: str | None = None
    retry_after_s: float = 0.0
    faces: tuple[FaceResult, ...] = ()
    faces_found: int = 0
    heatmap_jpeg: bytes | None = None
    tracks: tuple[Recommendation, ...] = ()
    strategy: str | None = None
    entry_id: str | None = None
    emotion: str | None = None  # the sender's face after their prior: what was stored
    probs: dict[str, float] | None = None
    asked: bool = False  # the reply asks "Did I get it right?" (Yes / No instead of "Spot on")
    platform: Choice | None = None  # where the tracks' links open (the user's choice)

    @property
    def prior_applied(self) -> bool:
        return bool(self.faces) and self.faces[0].prior_applied

    @property
    def baseline_applied(self) -> bool:
        return bool(self.faces) and self.faces[0].baseline_applied


@dataclass(frozen=True, slots=True)
class BaselineOutcome:
    """`/mood baseline set`: an error code, or how many calm photos are averaged and how it reads."""

    error: str | None = None
    retry_after_s: float = 0.0
    saved: dict[str, Any] | None = None  # what UserStore.add_baseline stored

    @property
    def photos(self) -> int:
        return int(self.saved["photos"]) if self.saved else 0

    @property
    def reads_as(self) -> str | None:
        """The calm face's top class."""
        if not self.saved:
            return None
        probs: dict[str, float] = self.saved["probs"]
        return max(probs, key=probs.__getitem__)


async def set_calm_face(
    user_id: int,
    fetch: Callable[[], Awaitable[bytes]],
    *,
    store: UserStore,
    analyzer: Analyzer,
    cooldown_s: float = 10.0,
) -> BaselineOutcome:
    """Read a calm selfie *as the model sees it* (no prior, no baseline) and average it in.

    Only the reading's probabilities are kept (``UserStore.add_baseline``), never the photo.
    """
    if stop := await _gate(user_id, store, cooldown_s):
        return BaselineOutcome(error=stop[0], retry_after_s=stop[1])
    try:
        result = await analyzer.analyze(user_id, await fetch(), want_heatmap=False)
    except MoodringError as exc:
        log.info("calm face of user %s failed: %s", store.hash(user_id), exc.code)
        await store.release_cooldown(user_id)
        return BaselineOutcome(error=exc.code)
    face = result.faces[0]  # the largest: the sender's
    # the network's own reading (before any community adapter): the worker adapts it when used
    try:
        return BaselineOutcome(saved=await store.add_baseline(user_id, face.raw_probs or face.probs))
    except NoConsent:  # /mood forget (or a decline) while the photo was being read
        log.info("user %s was forgotten during a calm-face reading; nothing kept", store.hash(user_id))
        return BaselineOutcome(error="forgotten_during_check")


async def _gate(user_id: int, store: UserStore, cooldown_s: float) -> tuple[str, float] | None:
    """Why a photo may not be read now (consent, cooldown) with the wait, or None: go ahead."""
    if not await store.consent(user_id):
        return "consent_needed", 0.0
    wait = await store.take_cooldown(user_id, cooldown_s)
    return ("cooldown", wait) if wait > 0 else None


def attachment_problem(content_type: str | None, size: int | None, max_bytes: int) -> str | None:
    """Refuse before downloading: an error code, or None when the attachment may be an image.

    Discord reports type and size with the attachment; an unknown type is let through
    (the worker's decoder has the last word).
    """
    if size is None:
        return "no_image"
    if content_type and not content_type.startswith("image/"):
        return "not_image"
    if size > max_bytes:
        return "too_large"
    return None


async def check_mood(
    user_id: int,
    fetch: Callable[[], Awaitable[bytes]],
    *,
    store: UserStore,
    analyzer: Analyzer,
    recommender: Recommender,
    strategy: Strategy | None = None,
    cooldown_s: float = 10.0,
    job_id: str | None = None,
) -> CheckOutcome:
    """Run one selfie through the whole product flow. Never raises for user-caused problems.

    ``fetch`` downloads the photo; it is only called once consent and cooldown allow a check.
    """
    if stop := await _gate(user_id, store, cooldown_s):
        return CheckOutcome(error=stop[0], retry_after_s=stop[1])
    try:
        prior = await store.prior(user_id)
        calm = await store.baseline(user_id)
        result = await analyzer.analyze(
            user_id,
            await fetch(),
            want_heatmap=True,
            prior=prior,
            baseline=calm["probs"] if calm else None,
            job_id=job_id,
        )
    except MoodringError as exc:
        log.info("check for user %s failed: %s", store.hash(user_id), exc.code)
        await store.release_cooldown(user_id)  # a failed check doesn't cost the user a wait
        return CheckOutcome(error=exc.code)
    return await finish_check(user_id, result, store=store, recommender=recommender, strategy=strategy)


async def finish_check(
    user_id: int, result: JobResult, *, store: UserStore, recommender: Recommender, strategy: Strategy | None
) -> CheckOutcome:
    """The worker answered: store the reading, choose the music (also used by a process that
    took over a check whose bot process died)."""
    faces = result.faces
    emotion, probs = faces[0].emotion, dict(faces[0].probs)
    try:
        recorded = await store.record_reading(
            user_id,
            emotion,
            probs,
            raw=faces[0].raw_probs or None,
            baseline=faces[0].baseline_applied,
            features=faces[0].features,
        )
    except NoConsent:  # /mood forget (or a decline) while the photo was being read: keep nothing
        log.info("user %s was forgotten during a check; its reading was not kept", store.hash(user_id))
        return CheckOutcome(error="forgotten_during_check")
    chosen = strategy or recommender.mood_map.default_strategy(emotion)
    platform = await store.platform(user_id)
    tracks = await recommender.recommend(
        emotion, probs=probs, strategy=chosen, user=store.hash(user_id), platform=platform
    )
    heatmap = base64.b64decode(result.heatmap_jpeg_b64) if result.heatmap_jpeg_b64 else None
    return CheckOutcome(
        faces=faces,
        faces_found=result.faces_found,
        heatmap_jpeg=heatmap,
        tracks=tuple(tracks),
        strategy=chosen,
        entry_id=recorded.entry_id,
        emotion=emotion,
        probs=probs,
        asked=recorded.asked,
        platform=platform,
    )
