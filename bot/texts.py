"""Every sentence the bot shows to users, in one place (error sentences: inference.api.errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.api.errors import user_message

if TYPE_CHECKING:
    from bot.guilds import ServerSettings

AI_ACT = (
    "• **Workplaces and schools:** the EU AI Act (Art. 5(1)(f), in force since 2 February 2025) "
    "forbids emotion recognition there. Admins of such a server turn moodring off with "
    "`/moodring server enabled:False`."
)

# What moodring keeps about a user, one phrase per key (the key's name under the user's prefix).
# bot.user_records.USER_KEYS is this table's keys, so `/mood forget` deletes exactly what
# `/mood privacy` tells of. A new consented data use is its line here and its write (through
# consented_write) and export line in bot/store.py.
KEPT = {
    "consent": "that you agreed, and when",
    "history": "each reading's emotion label, probabilities and time, for your `/mood history` "
    "({days} days by default)",
    "corrections": "your corrections",
    "prior": "how often you corrected each emotion (your later readings lean that way)",
    "recs": "the last songs suggested to you (so they don't repeat)",
    "cooldown": "the few seconds' pause between your photos",
    "sessions": "the listening sessions you are in",
    "platform": "the music app you chose (`/mood music`)",
    "baseline": "your calm face, if you give one (below)",
    "contribute": "whether you help improve readings (below)",
    "labels": "the readings you labelled while helping (below)",
}

PRIVACY = (
    "**What moodring does with your photo**\n"
    "• Your selfie is sent to a moodring worker, which finds faces and estimates an emotion with an "
    "AI model (a ResNet50 trained on the FER2013 dataset). It can be wrong, and it reads facial "
    "expressions, not feelings.\n"
    "• The photo is held in memory only while it is analysed (seconds, in a store that never writes "
    "to disk) and deleted right after. It is never written to disk, logs or the database, and "
    "neither is the heatmap or the attachment link.\n"
    "• What is kept: {kept}. "
    "`/mood export` shows all of it; "
    "`/mood forget` deletes all of it: from the database at once, and from its files on disk "
    "within {rewrite}.\n"
    "• **Calm face** (optional, `/mood baseline`): if you show me a relaxed selfie, I keep only that "
    "reading's probabilities and the time — never the photo, never anything that could recognise "
    "your face — and read your later photos relative to it (faces differ at rest).\n"
    "• **Help improve readings** (optional, off unless you turn it on below): your *Spot on*, "
    "*Not how I feel?* and *Did I get it right?* answers then also teach this moodring a small "
    "correction that it applies to everyone's readings. For each reading you label I keep the model's "
    "own probabilities, 128 numbers the model computed from the face's expression (never the photo, "
    "the crop or the full feature vector), your label and the time. It is used only together with at "
    "least {min_people} people, and only if it measurably reads better. Turning it off or `/mood "
    "forget` deletes all of it at once, and the correction is refitted without you within "
    "{refit}; `/mood export` shows it.\n" + AI_ACT
)
PRIVACY_CONTRIBUTING = "You are helping improve readings ({what} so far)."
PRIVACY_NOT_CONTRIBUTING = "You are not helping improve readings (nothing of yours is used for others)."

CONSENT = (
    "Before the first check: moodring uses an **AI model** to estimate the emotion on the faces in your "
    "photo. The photo is deleted right after; only the label, its probabilities and the time are kept "
    "for your history (see `/mood privacy`). Is that OK?"
)
CONSENT_ACCEPTED = "Thanks! Run `/mood check` again with your photo."
CONSENT_ACCEPTED_READING = "Thanks! Reading the photo you sent…"
PENDING_GONE = "The photo you sent earlier is no longer available: run `/mood check` with it again."
CONSENT_DECLINED = "No problem: moodring will not analyse your photos and stores nothing about you."

SHARED = "{mention} shared their mood reading."
CORRECTED = "Noted: **{emotion}**. Your next readings take that into account. Music for {emotion}:"
FORGET_CONFIRM = (
    "This deletes **everything** moodring stores about you (history, corrections, consent, recent "
    "music, session memberships). Continue?"
)
MUSIC_NOW = "Your **Listen** links open on **{platform}**. Change it with `/mood music platform:`."
MUSIC_SET = (
    "Done: your **Listen** links now open on **{platform}**: the exact track where moodring can "
    "find it, else a search there."
)
MUSIC_ASK = (
    "Done: each track now offers every platform (one page listing them where moodring can find "
    "the track, else a search link on each)."
)
SESSION_QUEUE_EMPTY = "Nothing queued yet: members check in with `/mood check` and the music follows."
SESSION_LISTEN_HEAD = "Links for you, on **{platform}**:"
FORGET_DONE = "Done: deleted {what}. moodring knows nothing about you now."
FORGET_CANCELLED = "Nothing was deleted."
HISTORY_EMPTY = "No readings in the last {days} days. Try `/mood check` with a selfie."
BASELINE_USED = "*Read relative to your calm face.*"
BASELINE_SAVED = (
    "Saved your calm face ({photos} of up to {most} photos averaged). From now on I read your photos "
    "relative to it. `/mood baseline clear` removes it."
)
BASELINE_LEAN = "At rest your face reads a little **{adjective}** to me; I'll take that into account."
BASELINE_SHOW = (
    "Your calm face: {photos} photo(s) averaged, last one <t:{at}:R>. At rest it reads mostly "
    "**{adjective}**. Only those numbers are kept, never a photo."
)
BASELINE_NONE = "You haven't shown me a calm face yet. `/mood baseline set` with a relaxed selfie adds one."
BASELINE_CLEARED = "Your calm face is gone; your readings are the model's own again."
BASELINE_GONE = "That reading is no longer stored, so it can't become your calm face."
MORE_FACES = "…and {more} I didn't read (8 at most per photo, the largest)."
READING_YOUR_PHOTO = "Reading the photo you posted; your reading will arrive here, only for you."
DMS_CLOSED = (
    "{mention} I can only send readings by DM, and yours are closed to me: nothing was read or kept. "
    "Open DMs from server members, or use `/mood check`."
)
NOT_YOUR_PHOTO = "I only read photos you posted yourself: faces are personal. Try one of your own."
FORGOTTEN = "You asked me to forget you, so this button does nothing now. `/mood check` starts again."
CONSENT_STALE = (
    "This prompt is no longer valid (the photo it was for is gone), so nothing was stored. "
    "Run `/mood check` with your photo and I'll ask again."
)
READING_GONE = "That reading is no longer stored, so there is nothing to label."
SHARE_ONLY_IN_SERVERS = (
    "Sharing posts a reading in a server channel; this conversation is private, so it stays here."
)
ASK_LINE = "**Did I get it right?** Your honest answer, either way, helps most."
ASK_WHICH = "Thanks for telling me. Which was it?"
LABEL_THANKS = "Thanks: noted. It helps moodring read everyone better."
LABEL_THANKS_PRIVATE = (
    "Thanks: noted for your own readings. To let your answers improve moodring for everyone, turn on "
    "**Help improve readings** in `/mood privacy`."
)
CONTRIBUTE_BUTTON_ON = "Help improve readings"
CONTRIBUTE_BUTTON_OFF = "Stop helping (delete my labels)"
CONTRIBUTE_ON = (
    "Thank you! From your next reading on, your *Spot on*, *Not how I feel?* and *Did I get it right?* "
    "answers help improve readings for everyone. Stop any time here, or with `/mood forget`."
)
CONTRIBUTE_OFF = "Done: you no longer help improve readings, and {what} were deleted."
CONTRIBUTE_NEEDS_CONSENT = (
    "Accept moodring's main consent first (the Accept button above), then turn this on."
)
PRIOR_USED = "*Read with your corrections taken into account.*"
AI_NOTICE = "AI estimate of a facial expression, not a diagnosis."
HEATMAP_ALT = "Heatmap: where the model looked to read each face"

SERVER_OFF = (
    "moodring is turned off in this server by its admins. `/mood forget`, `/mood export` and "
    "`/mood privacy` still work, and so does moodring in your DMs."
)
SESSIONS_OFF = "Listening sessions are turned off in this server by its admins."
WATCH_OFF = "Selfie channels are turned off in this server by its admins."
NEEDS_SERVER_INSTALL = (
    "That needs moodring added to this server (you installed it to your account only). "
    "Your reading stays private to you here."
)
MESSAGE_CONTENT_MISSING = (
    "MOODRING_WATCH_CHANNELS=true needs the privileged Message Content intent, and Discord refused "
    "it: turn on 'Message Content Intent' in the Developer Portal (your app → Bot → Privileged "
    "Gateway Intents), or unset MOODRING_WATCH_CHANNELS. Bots in 100 or more servers must be "
    "verified and approved for the intent first."
)
WATCH_NEEDS_OPERATOR = (
    "Selfie channels are off on this moodring: its operator has to set MOODRING_WATCH_CHANNELS=true "
    "(and turn on Discord's Message Content intent)."
)
WATCH_ON = "Watching {channel}: photos members post there get a reading (after their consent)."
WATCH_OFF_CHANNEL = "No longer watching {channel}."
WATCH_CONSENT = (
    "{mention} this is a selfie channel: moodring can read the emotion on your photos here with an "
    "**AI model** and reply with music. Your photo is deleted right after; only the label, its "
    "probabilities and the time are kept (`/mood privacy`). Nothing is read until you accept."
)
NEEDS_MANAGE_SERVER = "Only members with **Manage Server** can change moodring's settings here."


SESSION_ERRORS: dict[str, str] = {
    "session_exists": "There is already a listening session in this channel. Join it with `/session join`.",
    "no_session": "There is no listening session here. Start one with `/session start`.",
    "not_member": "Only members of this session can do that. Press **Join** first.",
    "not_host": "Only the host (or someone with Manage Channels) can do that.",
}
SESSION_STARTED = "Session started. Members check in with `/mood check`; the music follows the room."
SESSION_JOINED = "You joined the session. Check in with `/mood check` so your mood counts."
SESSION_JOINED_REUSED = "You joined the session with your latest mood ({emotion})."
SESSION_ALREADY = "You are already in this session."
SESSION_LEFT = "You left the session."
SESSION_NOT_IN = "You weren't in this session."
SESSION_VOTED = "Vote counted: {votes}/{needed} to skip."
SESSION_SKIPPED = "Skipped."
SESSION_ENDED = "This listening session has ended."
SESSION_CHECKED_IN = "Your mood now counts in this channel's listening session."
SESSION_NO_LATEST = "You have no recent reading to reuse; joined without a mood. Use `/mood check`."


def on_off(value: bool) -> str:
    return "on" if value else "off"


def server_settings(settings: ServerSettings) -> str:
    """What `/moodring server` answers: every setting as it stands now."""
    return (
        f"**moodring in this server:** {on_off(settings.enabled)}\n"
        f"• listening sessions: {on_off(settings.sessions)}\n"
        f"• selfie channels: {on_off(settings.watch)}\n"
        f"• default music strategy: {settings.strategy or 'per emotion'}\n"
        "`/mood forget` always works, whatever is switched off."
    )


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 record``, ``2 records``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def privacy(days: int, min_people: int, refit: str, contributing: bool, given: int, rewrite: str) -> str:
    """`/mood privacy`: what is processed and kept, and where this user stands on contributing."""
    state = (
        PRIVACY_CONTRIBUTING.format(what=plural(given, "labelled reading"))
        if contributing
        else PRIVACY_NOT_CONTRIBUTING
    )
    kept = "; ".join(KEPT.values()).format(days=days)
    return (
        PRIVACY.format(days=days, min_people=min_people, refit=refit, rewrite=rewrite, kept=kept)
        + "\n\n"
        + state
    )


def duration(seconds: float) -> str:
    """``an hour``, ``2 hours``, ``30 minutes``, ``a day``."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"a{'n' if unit == 'hour' else ''} {unit}" if n == 1 else f"{n} {unit}s"
    return plural(max(1, round(seconds)), "second")


def forget_done(deleted: int) -> str:
    return FORGET_DONE.format(what=plural(deleted, "record") if deleted else "nothing (nothing was stored)")


def session_error(code: str) -> str:
    return SESSION_ERRORS.get(code) or error("internal")


def error(code: str, *, seconds: float = 0, max_mb: float = 10) -> str:
    """The sentence for an error code, from the one table in :mod:`inference.api.errors`."""
    return user_message(code, seconds=seconds, max_mb=max_mb)
