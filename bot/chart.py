"""The `/mood history` chart: readings per day, stacked by emotion (matplotlib, PNG bytes).

Rendering is CPU work; the cog calls :func:`mood_chart` through ``asyncio.to_thread``.
A ``Figure`` is built directly (no pyplot), so concurrent renders share no global state.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

from bot.store import DAY, MoodEntry
from inference.api.emotions import EmotionRegistry


def mood_chart(
    entries: Sequence[MoodEntry], days: int, emotions: EmotionRegistry, now: float | None = None
) -> bytes:
    """PNG of the last ``days`` days; a corrected reading counts as what the user said."""
    from matplotlib.figure import Figure

    now = now or time.time()
    today = int(now // DAY)
    counts = {name: [0] * days for name in emotions.names}
    for entry in entries:
        age = today - int(entry.at // DAY)
        if 0 <= age < days:
            counts.setdefault(entry.corrected or entry.emotion, [0] * days)[days - 1 - age] += 1
    fig = Figure(figsize=(7, 2.8), dpi=100)
    ax = fig.add_subplot()
    x = list(range(days))
    bottom = [0] * days
    for emotion, ys in counts.items():
        if any(ys):
            ax.bar(x, ys, bottom=bottom, color=emotions[emotion].hex, label=emotion, width=0.8)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    step = 1 if days <= 7 else 7
    ticks = list(range(days - 1, -1, -step))[::-1]
    ax.set_xticks(ticks, [f"-{days - 1 - t}d" if t != days - 1 else "today" for t in ticks])
    ax.set_ylabel("readings")
    ax.set_title(f"moods, last {days} days")
    ax.spines[["top", "right"]].set_visible(False)
    if any(bottom):
        ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=4)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
