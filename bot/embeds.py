"""Turn domain results into embeds, files and link buttons (no Redis, no side effects)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import discord

from bot import texts
from bot.mood_flow import CheckOutcome
from bot.sessions import SessionView
from bot.store import BASELINE_PHOTOS, MoodEntry, summarize
from inference.api.emotions import EmotionRegistry
from recommender.platforms import LABELS
from recommender.ranking import Recommendation
from recommender.tracks import Track

HEATMAP_NAME = "heatmap.jpg"
CHART_NAME = "moods.png"


def bar(p: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, p)) * width)
    return "\N{FULL BLOCK}" * filled + "\N{LIGHT SHADE}" * (width - filled)


def _track_line(i: int, rec: Recommendation) -> str:
    extras = link_extras(rec.track)
    return f"{i}. {linked_name(rec.track)}\n   *{rec.reason}*" + (f"\n   {extras}" if extras else "")


def linked_name(track: Track) -> str:
    """``Title — Artists`` as a link to the track; plain text when the track offers every
    platform instead (its links are in :func:`link_extras`)."""
    name = f"{track.title} — {', '.join(track.artists)}"
    return name if track.choices else f"[{name}]({track.url})"


def link_extras(track: Track) -> str:
    """The links beside "Listen": the 30-second preview, and for "ask every time" without one page
    for every platform, one link per platform (the listener picks)."""
    parts = [f"[{LABELS.get(p, p)}]({url})" for p, url in track.choices]
    if track.preview_url:
        parts.append(f"[\N{BLACK RIGHT-POINTING TRIANGLE} Preview]({track.preview_url})")
    return " · ".join(parts)


def listen_lines(tracks: Sequence[Track], platform: str) -> str:
    """A session's queue with links on one member's platform (their ephemeral Listen answer)."""
    where = LABELS.get(platform, platform)
    lines = [texts.SESSION_LISTEN_HEAD.format(platform=where)]
    for i, t in enumerate(tracks):
        head = linked_name(t)
        extras = link_extras(t)
        lines.append(
            ("**Now playing:** " if i == 0 else f"{i + 1}. ") + head + (f" · {extras}" if extras else "")
        )
    return "\n".join(lines)


def tracks_embed(tracks: Sequence[Recommendation], title: str, colour: int = 0x1DB954) -> discord.Embed:
    embed = discord.Embed(title=title, colour=colour)
    embed.description = "\n".join(_track_line(i, r) for i, r in enumerate(tracks, 1))[:4096]
    return embed


def check_embed(out: CheckOutcome, emotions: EmotionRegistry) -> tuple[discord.Embed, list[discord.File]]:
    """The answer to ``/mood check``: emotion, confidence, top-3 bars, reason, heatmap, music."""
    assert out.faces and out.emotion is not None
    main = out.faces[0]
    info = emotions[out.emotion]
    embed = discord.Embed(
        title=f"{info.emoji} You look **{info.adjective}** ({main.confidence:.0%})", colour=info.colour
    )
    embed.description = reading_body(out)
    if len(out.faces) > 1:
        embed.add_field(
            name=f"{len(out.faces)} faces (largest first)", value=_faces_lines(out)[:1024], inline=False
        )
    if out.tracks:
        lines = [_track_line(i, r) for i, r in enumerate(out.tracks, 1)]
        if sum(len(line) + 1 for line in lines) <= 1024:
            embed.add_field(name=f"Music ({out.strategy})", value="\n".join(lines), inline=False)
        else:  # links on every platform: a field per track, never a link cut in half
            for i, line in enumerate(lines):
                embed.add_field(
                    name=f"Music ({out.strategy})" if i == 0 else "\u200b", value=line[:1024], inline=False
                )
    files = []
    if out.heatmap_jpeg:
        files.append(discord.File(io.BytesIO(out.heatmap_jpeg), HEATMAP_NAME))
        embed.set_image(url=f"attachment://{HEATMAP_NAME}")
    embed.set_footer(text=texts.AI_NOTICE)
    return embed, files


def reading_body(out: CheckOutcome) -> str:
    """The top-3 bars, the reason line and what re-weighted the reading (embed and V2 alike)."""
    main = out.faces[0]
    top = "\n".join(f"`{bar(p)}` {label} {p:.0%}" for label, p in main.top(3))
    body = f"{top}\n\n{main.reason}"
    if out.baseline_applied:
        body += "\n" + texts.BASELINE_USED
    if out.prior_applied:
        body += "\n" + texts.PRIOR_USED
    return body


def _faces_lines(out: CheckOutcome) -> str:
    lines = [f"{i}. **{f.emotion}** {f.confidence:.0%} — {f.reason}" for i, f in enumerate(out.faces, 1)]
    more = out.faces_found - len(out.faces)
    if more > 0:
        lines.append(texts.MORE_FACES.format(more=texts.plural(more, "more face")))
    return "\n".join(lines)


def faces_text(out: CheckOutcome) -> str:
    """Every face of a group photo, one line each (largest first)."""
    return f"**{len(out.faces)} faces (largest first)**\n{_faces_lines(out)}"[:4000]


def baseline_text(saved: dict[str, Any], emotions: EmotionRegistry) -> str:
    """What `/mood baseline set` (or the calm-face button) says after saving."""

    probs: dict[str, float] = saved["probs"]
    top = max(probs, key=probs.__getitem__)
    text = texts.BASELINE_SAVED.format(photos=saved["photos"], most=BASELINE_PHOTOS)
    if top != "neutral":
        text += "\n" + texts.BASELINE_LEAN.format(adjective=emotions[top].adjective)
    return text


def history_embed(
    entries: Sequence[MoodEntry],
    week: dict[str, Any],
    days: int,
    chart_png: bytes | None,
    emotions: EmotionRegistry,
) -> tuple[discord.Embed, list[discord.File]]:
    """`/mood history`: last readings, most frequent mood, weekly line and a chart."""
    if not entries:
        return discord.Embed(description=texts.HISTORY_EMPTY.format(days=days)), []
    period = summarize(entries, days)
    counts: dict[str, int] = period["counts"]
    top: str = period["most_frequent"]
    embed = discord.Embed(title=f"Your moods, last {days} days", colour=emotions[top].colour)
    recent = []
    for e in entries[:5]:
        # the model's label with its own emoji; what the user said, with its emoji, beside it
        fixed = ""
        if e.corrected and e.corrected != e.emotion:
            fixed = f" (you said {emotions[e.corrected].emoji} {e.corrected})"
        fixed += " · calm-relative" if e.baseline else ""
        said = f"{emotions[e.emotion].emoji} **{e.emotion}** {e.confidence:.0%}"
        recent.append(f"<t:{int(e.at)}:R> {said}{fixed}")
    embed.add_field(name="Latest", value="\n".join(recent), inline=False)
    embed.add_field(name="Most frequent", value=f"{emotions[top].emoji} {top} ({counts[top]}×)", inline=True)
    embed.add_field(name="This week", value=weekly_line(week), inline=False)
    files = []
    if chart_png:
        files.append(discord.File(io.BytesIO(chart_png), CHART_NAME))
        embed.set_image(url=f"attachment://{CHART_NAME}")
    embed.set_footer(text=texts.AI_NOTICE)
    return embed, files


def weekly_line(week: dict[str, Any]) -> str:
    """One sentence such as ``"5 readings: mostly happy (3), then sad (2)."``."""
    counts: dict[str, int] = week["counts"]
    if not counts:
        return "No readings this week."
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    line = f"{texts.plural(week['entries'], 'reading')}: mostly {ranked[0][0]} ({ranked[0][1]})"
    if len(ranked) > 1:
        line += ", then " + ", ".join(f"{k} ({v})" for k, v in ranked[1:3])
    return line + "."


def session_embed(view: SessionView) -> discord.Embed:
    """The session message: group mood, now playing, what's next, members and votes."""
    embed = discord.Embed(title="Listening session", colour=0x1DB954, description=view.mood_line)
    playing = view.now_playing
    if playing is not None:
        # no links here: the board is everyone's, and each member's Listen opens their own platform
        embed.add_field(
            name="Now playing",
            value=f"**{playing.title}** — {', '.join(playing.artists)}\n*{playing.reason}*",
            inline=False,
        )
        upcoming = "\n".join(f"{i}. {t.title} — {t.artists[0]}" for i, t in enumerate(view.queue[1:5], 2))
        if upcoming:
            embed.add_field(name="Up next", value=upcoming[:1024], inline=False)
    members = " ".join(f"<@{m}>" + (" (host)" if m == view.host_id else "") for m in view.members)
    embed.add_field(name=f"Members ({len(view.members)})", value=members[:1024] or "—", inline=False)
    embed.set_footer(text=f"strategy: {view.strategy} · skip votes {view.votes}/{view.votes_needed}")
    return embed
