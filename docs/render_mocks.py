"""Each Discord reply of moodring as the JSON payload Discord receives, and a rendered mock PNG.

    python docs/render_mocks.py        # writes docs/discord/<reply>.json and <reply>.png

Screenshots of the real client aren't possible here, so the payloads are built by the bot's own
code (``bot.views.reading_layout``, ``bot.embeds``, ``bot.texts``) from a sample reading, and each
is drawn by a small renderer in Discord's dark-theme style: containers with their accent bar,
text displays (Markdown headings, bold and subtext), the media gallery, sections with their link
button, separators, action rows with buttons and selects, and classic embeds. The mock is for
review of structure and wording, not pixel fidelity (no emoji font: emoji are dropped).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "discord"
W = 620
BG, CARD, TEXT, MUTED, LINE = (49, 51, 56), (43, 45, 49), (219, 222, 225), (148, 155, 164), (63, 65, 71)
STYLES = {1: (88, 101, 242), 2: (78, 80, 88), 3: (36, 128, 70), 4: (218, 55, 60), 5: (78, 80, 88)}


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    import matplotlib.font_manager as fm

    path = fm.findfont(fm.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"))
    return ImageFont.truetype(path, size)


def _plain(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = text.replace("**", "").replace("`", "").replace("*", "")
    return "".join(ch for ch in text if ord(ch) < 0x2600 or 0x2580 <= ord(ch) <= 0x259F)


class Canvas:
    """Draws top to bottom; ``y`` is the next free line."""

    def __init__(self) -> None:
        self.im = Image.new("RGB", (W, 4000), BG)
        self.d = ImageDraw.Draw(self.im)
        self.y = 16

    def text(self, x: int, raw: str, width: int) -> None:
        for line in raw.split("\n"):
            size, bold, colour = 14, False, TEXT
            if line.startswith("## "):
                line, size, bold = line[3:], 20, True
            elif line.startswith("-# "):
                line, size, colour = line[3:], 11, MUTED
            font = _font(size, bold or line.startswith("**"))
            chars = max(10, int(width / (size * 0.55)))
            for part in textwrap.wrap(_plain(line), chars) or [""]:
                self.d.text((x, self.y), part, font=font, fill=colour)
                self.y += size + 6

    def button(self, x: int, c: dict[str, Any]) -> int:
        label = _plain(c.get("label") or "") + (" ↗" if c.get("style") == 5 else "")
        width = int(_font(13).getlength(label)) + 24
        self.d.rounded_rectangle((x, self.y, x + width, self.y + 30), 4, fill=STYLES.get(c.get("style", 2)))
        self.d.text((x + 12, self.y + 7), label, font=_font(13), fill=(255, 255, 255))
        return width

    def component(self, x: int, c: dict[str, Any], width: int, images: dict[str, Image.Image]) -> None:
        kind = c["type"]
        if kind == 17:  # container
            top = self.y
            self.y += 12
            for child in c["components"]:
                self.component(x + 16, child, width - 32, images)
                self.y += 8
            self.d.rectangle((x, top, x + width, self.y), outline=LINE)
            colour = c.get("accent_color")
            if colour is not None:
                self.d.rectangle(
                    (x, top, x + 4, self.y), fill=((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
                )
            self.y += 8
        elif kind == 10:
            self.text(x, c["content"], width)
        elif kind == 12:  # media gallery
            for item in c["items"]:
                pic = images.get(item["media"]["url"].removeprefix("attachment://"))
                if pic is not None:
                    scale = min(width / pic.width, 320 / pic.height)  # a mock: keep the file small
                    scaled = pic.resize((int(pic.width * scale), int(pic.height * scale)))
                    self.im.paste(scaled, (x, self.y))
                    self.y += scaled.height + 6
        elif kind == 9:  # section: text left, accessory right
            top = self.y
            for child in c["components"]:
                self.component(x, child, width - 110, images)
            bottom, self.y = self.y, top
            self.button(x + width - 90, c["accessory"])
            self.y = max(bottom, top + 34)
        elif kind == 14:
            self.d.line((x, self.y + 4, x + width, self.y + 4), fill=LINE, width=1)
            self.y += 10
        elif kind == 1:  # action row
            cx = x
            for child in c["components"]:
                if child["type"] == 3:  # select
                    self.d.rounded_rectangle((cx, self.y, x + width, self.y + 34), 4, fill=(30, 31, 34))
                    self.d.text(
                        (cx + 10, self.y + 9),
                        child.get("placeholder", "") + "  ▾",
                        font=_font(13),
                        fill=MUTED,
                    )
                    cx = x + width
                else:
                    cx += self.button(cx, child) + 8
            self.y += 38

    def embed(self, x: int, e: dict[str, Any], width: int, images: dict[str, Image.Image]) -> None:
        top = self.y
        self.d.rectangle((x, top, x + width, top + 2), fill=CARD)
        self.y += 10
        if e.get("title"):
            self.text(x + 14, "**" + e["title"], width - 28)
        if e.get("description"):
            self.text(x + 14, e["description"], width - 28)
        for f in e.get("fields", []):
            self.text(x + 14, "**" + f["name"], width - 28)
            self.text(x + 14, f["value"], width - 28)
        image = (e.get("image") or {}).get("url", "")
        if image.startswith("attachment://") and image.removeprefix("attachment://") in images:
            self.component(x + 14, {"type": 12, "items": [{"media": {"url": image}}]}, width - 28, images)
        if e.get("footer"):
            self.text(x + 14, "-# " + e["footer"]["text"], width - 28)
        colour = e.get("color", 0)
        self.d.rectangle(
            (x, top, x + 4, self.y), fill=((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
        )
        self.y += 10

    def png(self) -> bytes:
        buf = io.BytesIO()
        shot = self.im.crop((0, 0, W, self.y + 16)).quantize(colors=96)  # small files for the repo
        shot.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def render(payload: dict[str, Any], images: dict[str, Image.Image]) -> bytes:
    c = Canvas()
    c.d.text((16, c.y), "moodring  APP", font=_font(14, True), fill=(255, 255, 255))
    c.y += 26
    if payload.get("content"):
        c.text(16, payload["content"], W - 32)
    for e in payload.get("embeds", []):
        c.embed(16, e, W - 32, images)
    for comp in payload.get("components", []):
        c.component(16, comp, W - 32, images)
    if payload.get("flags", 0) & (1 << 6):
        c.text(16, "-# Only you can see this", W - 32)
    return c.png()


def _sample() -> tuple[Any, Image.Image]:
    """A reading as the worker answers it: two faces, heatmap, five offline-catalog tracks."""
    from bot.mood_flow import CheckOutcome
    from inference.api.contract import FaceResult
    from inference.serve.analyze import sample_photo
    from recommender.catalogs import load_offline_catalog
    from recommender.mood import load_mood_map
    from recommender.service import MemoryHistory, Recommender

    probs = {
        "happy": 0.81,
        "surprise": 0.09,
        "neutral": 0.05,
        "sad": 0.02,
        "fear": 0.01,
        "angry": 0.01,
        "disgust": 0.01,
    }
    face = FaceResult(
        box=(160, 100, 350, 340), score=0.99, emotion="happy", confidence=0.81, probs=probs,
        reason="happy: mostly the mouth (46% of the evidence), then the eyes and brows (21%)",
    )  # fmt: skip
    other = face.model_copy(
        update={"emotion": "neutral", "confidence": 0.62, "reason": "neutral: mostly the eyes"}
    )
    photo = Image.open(sample_photo()).convert("RGB")
    heat = Image.new("RGB", photo.size, (255, 80, 0))
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((190, 260, 330, 350), fill=110)
    heatmap = Image.composite(heat, photo, mask)
    ImageDraw.Draw(heatmap).rectangle(face.box, outline=(255, 215, 0), width=3)
    buf = io.BytesIO()
    heatmap.save(buf, format="JPEG", quality=90)
    recommender = Recommender(load_mood_map(), [load_offline_catalog()], MemoryHistory())
    tracks = asyncio.run(recommender.recommend("happy", probs=probs, strategy="match"))
    out = CheckOutcome(
        faces=(face, other), faces_found=2, heatmap_jpeg=buf.getvalue(), tracks=tuple(tracks[:5]),
        strategy="match", entry_id="1764590000000-0", emotion="happy", probs=probs,
    )  # fmt: skip
    return out, heatmap


def payloads() -> dict[str, tuple[dict[str, Any], dict[str, Image.Image]]]:
    from bot import embeds, texts, views
    from bot.disk_forget import bound_s
    from bot.guilds import ServerSettings
    from bot.sessions import QueuedTrack, SessionView
    from inference.api.emotions import load_registry
    from recommender.links import Found, with_links

    emotions = load_registry(None)
    out, heatmap = _sample()
    owner = 4242
    images = {embeds.HEATMAP_NAME: heatmap}
    layout, files = views.reading_layout(out, emotions, owner, share=True)
    reading = {"flags": (1 << 15) | (1 << 6), "components": layout.to_components()}
    reading["attachments"] = [{"id": i, "filename": f.filename} for i, f in enumerate(files)]
    asked_layout, _ = views.reading_layout(replace(out, asked=True), emotions, owner, share=True)
    asked = {"flags": (1 << 15) | (1 << 6), "components": asked_layout.to_components()}
    asked["attachments"] = reading["attachments"]
    privacy = {
        "flags": 1 << 6,
        "content": texts.privacy(
            90, 20, texts.duration(3600), contributing=False, given=0, rewrite=texts.duration(bound_s(600))
        ),
        "components": views.privacy_view(owner, contributing=False).to_components(),
    }
    embed, _ = embeds.check_embed(out, emotions)
    classic = {
        "flags": 1 << 6,
        "embeds": [embed.to_dict()],
        "components": views.check_view(owner, out, emotions).to_components(),
        "attachments": [{"id": 0, "filename": embeds.HEATMAP_NAME}],
    }
    consent = {
        "flags": 1 << 6,
        "content": texts.CONSENT,
        "components": views.consent_view(owner, "0" * 16).to_components(),
    }
    watch = {
        "content": texts.WATCH_CONSENT.format(mention=f"<@{owner}>"),
        "components": views.consent_view(owner, "0" * 16).to_components(),
        "message_reference": {"message_id": "1"},
    }
    queue = tuple(QueuedTrack(r.track.title, r.track.artists, r.track.url, r.reason) for r in out.tracks)
    line = "3 people: mostly happy, one sad → lifting gently"
    session = SessionView(920, owner, "lift", (owner, 5151, 7070), line, queue, 1, 2, None)
    board = {
        "embeds": [embeds.session_embed(session).to_dict()],
        "components": views.session_view(920).to_components(),
    }
    settings = {
        "flags": 1 << 6,
        "content": texts.server_settings(ServerSettings(enabled=True, sessions=False, strategy="calm")),
    }
    # a Deezer listener's reading: exact tracks and previews (the link sources' answer, as cached)
    deezer = [
        replace(
            r,
            track=with_links(
                r.track,
                Found(
                    {"deezer": f"https://www.deezer.com/track/{3135556 + i}"},
                    f"https://audio-ssl.itunes.apple.com/itunes-assets/AudioPreview/{i}.aac.p.m4a",
                ),
                "deezer",
            ),
        )
        for i, r in enumerate(out.tracks)
    ]
    platform_layout, _ = views.reading_layout(replace(out, tracks=tuple(deezer)), emotions, owner, share=True)
    on_platform = {"flags": (1 << 15) | (1 << 6), "components": platform_layout.to_components()}
    on_platform["attachments"] = reading["attachments"]
    listen = {
        "flags": 1 << 6,
        "content": embeds.listen_lines([d.track for d in deezer], "deezer"),
    }
    return {
        "reading": (reading, images),
        "reading-asked": (asked, images),
        "reading-classic-embed": (classic, images),
        "privacy": (privacy, {}),
        "consent-prompt": (consent, {}),
        "selfie-channel-consent": (watch, {}),
        "reading-on-a-platform": (on_platform, images),
        "session-board": (board, {}),
        "session-listen": (listen, {}),
        "server-settings": (settings, {}),
    }


ABOUT = {
    "reading": "The answer to `/mood check`, *Read mood*, a DM or @mention photo and a selfie-channel "
    "photo: one Components V2 container in the emotion's colour. Headline, top-3 bars and the Grad-CAM "
    "reason; the heatmap in a media gallery (alt text set); every face of a group photo; one section per "
    "track with a Listen link; *Spot on*, Share (only where the bot is in the server) and *Use this as "
    "my calm face*; the correction menu; the AI notice as subtext. Under V2's limit of 40 components "
    "(this one: {count}); no `content`, no embeds. *Share to channel* re-posts the same container "
    "without the owner's buttons, with a line naming who shared it.",
    "reading-asked": "The same reading on the random share (20 %) of readings of users who help improve "
    "readings: *Did I get it right?* with Yes / No of equal weight instead of *Spot on* (the unbiased "
    "labels the community adapter is weighted and judged by; No asks which emotion it was).",
    "privacy": "`/mood privacy`: what is processed and kept, Accept / Decline, and the separate "
    "switch to help improve readings for everyone (it reads *Stop helping (delete my labels)* once on).",
    "reading-classic-embed": "The same reading as a classic embed with buttons: the fallback "
    "(`MOODRING_COMPONENTS_V2=false`, and the restart path, which edits a reply Discord created "
    "before the layout existed).",
    "consent-prompt": "The first `/mood check` (or `/mood privacy`): nothing is read until Accept; "
    "the Accept button carries a token for the photo already sent.",
    "selfie-channel-consent": "A photo posted in a watched channel by a member who hasn't consented: "
    "one reply with the prompt; Accept reads that photo, privately.",
    "session-board": "The listening session's message in the channel, edited at most once a second: "
    "the shared queue once, without links (members listen on different platforms).",
    "reading-on-a-platform": "A reading for a user who chose Deezer (`/mood music`): each Listen opens "
    "the exact track there, and a Preview link plays the 30-second clip. Without an exact link it is "
    "a search on Deezer; never another service. A link not known within 300 ms (a cold cache) goes "
    "out as that search and the same message is edited with the exact track when the lookup lands "
    "(about 0.3 s later with the benchmark's assumed answer times).",
    "session-listen": "A member's **Listen** on the session board: the queue on their own platform, "
    "only for them.",
    "server-settings": "`/moodring server …` for admins: every setting as it stands.",
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    doc = [
        "# moodring on Discord: every reply, as sent",
        "",
        "Generated by `python docs/render_mocks.py` from the bot's own code (a sample reading with two",
        "faces and five offline-catalog tracks). Each section shows the JSON payload Discord receives and",
        "a mock rendered from that payload (dark theme; emoji dropped; structure and wording, not pixels).",
        "Flags: 64 = ephemeral (only the user sees it), 32768 = Components V2.",
        "",
        "**Previews are links, not attachments.** Where a link source gives a 30-second clip, a",
        "reply shows a *Preview* link beside *Listen*. Attaching the clip instead would cost, per",
        "reply of five tracks, 2.5 MB (Deezer's MP3 at 128 kbit/s: ~0.47 MB a clip) to 5 MB",
        "(iTunes' AAC at up to 256 kbit/s: ~0.94 MB), downloaded from the CDN and uploaded again",
        "before the reply can be sent: within Discord's attachment limit (10 MiB for a bot in a",
        "server without boosts), but seconds of transfer on a small VPS for every reading, against",
        "~110 characters of the 4,000 a Components V2 message's text may hold per link. Estimated",
        "from the formats' bitrates, not measured live (this machine has no network).",
        "",
    ]
    for name, (payload, images) in payloads().items():
        text = json.dumps(payload, indent=2, ensure_ascii=False)
        (OUT / f"{name}.json").write_text(text + "\n")
        (OUT / f"{name}.png").write_bytes(render(payload, images))
        count = sum(1 for _ in _walk(payload.get("components", [])))
        doc += [f"## {name}", "", ABOUT[name].format(count=count), "", f"![{name}](discord/{name}.png)", ""]
        doc += ["```json", text, "```", ""]
        print(f"docs/discord/{name}.json, .png", file=sys.stderr)  # noqa: T201 - a CLI
    (ROOT / "docs" / "discord.md").write_text("\n".join(doc))


def _walk(components: list[dict[str, Any]]) -> Any:
    for c in components:
        yield c
        yield from _walk(c.get("components") or [])
        if c.get("accessory"):
            yield from _walk([c["accessory"]])


if __name__ == "__main__":
    main()
