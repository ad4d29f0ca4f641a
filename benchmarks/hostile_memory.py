"""Peak memory per hostile (and normal) file: the bot's submit path and `moodring analyze`.

python -m benchmarks.hostile_memory [--out DIR]

Generates the files (nothing is committed): the issue's small-file bombs under the 100 MP cap
(a 9000x9000 GIF logical screen, a 16-bit PNG, an RGBA PNG and a lossless WebP, ~81 MP each),
a BMP header declaring 30000x30000, a zTXt bomb, and normal photos (12 MP JPEG, 24 MP PNG). Each
file runs in a fresh Python process twice: the bot's path (``shrink_for_queue``, no torch) and
the CLI's (the shipped model loaded, then ``Predictor.analyze``); each prints its outcome and its
peak RSS (``VmHWM``). Targets (issue 18): bot <= 300 MB, CLI/worker <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]

# Peak RSS of this process since exec: VmHWM (ru_maxrss would include the parent's at fork time).
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024"

BOT = """
import sys
from inference.api.client import shrink_for_queue
from inference.api.errors import MoodringError
data = open(sys.argv[1], "rb").read()
try:
    out = f"ok {len(shrink_for_queue(data))} B"
except MoodringError as exc:
    out = f"{exc.code}"
print(out, PEAK)
""".replace("PEAK", PEAK)

CLI = """
import sys, torch
torch.set_num_threads(2)
from inference.api.errors import MoodringError
from inference.serve.predictor import Predictor
p = Predictor.load(None, "mtcnn")
base = PEAK
try:
    r = p.analyze(open(sys.argv[1], "rb").read())
    out = f"ok {len(r.faces)} face(s)"
except MoodringError as exc:
    out = f"{exc.code}"
print(out, PEAK, base)
""".replace("PEAK", PEAK)


def _gif_screen(w: int, h: int) -> bytes:
    """A 1x1 image on a w x h logical screen: a few dozen bytes."""
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + image + b"\x3b"


def files(out: Path) -> list[Path]:
    made = []

    def save(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)
        made.append(out / name)

    def pil(name: str, im: Image.Image, **kw: object) -> None:
        buf = io.BytesIO()
        im.save(buf, **kw)  # type: ignore[arg-type]
        save(name, buf.getvalue())

    side = 9000
    save("gif-9000x9000-screen.gif", _gif_screen(side, side))
    pil("png-16bit-81MP.png", Image.new("I;16", (side, side)), format="PNG")
    pil("png-rgba-81MP.png", Image.new("RGBA", (side, side), (10, 20, 30, 0)), format="PNG")
    pil("webp-lossless-81MP.webp", Image.new("RGBA", (side, side)), format="WEBP", lossless=True, method=0)
    bmp = bytearray(
        b"BM"
        + struct.pack("<IHHI", 54, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 0, 0, 0, 0)
    )
    save("bmp-header-30000x30000.bmp", bytes(bmp))
    info = PngImagePlugin.PngInfo()
    info.add_text("bomb", "A" * 50_000_000, zip=True)
    pil("png-ztxt-bomb.png", Image.new("RGB", (64, 64)), format="PNG", pnginfo=info)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    pil("jpeg-12MP.jpg", photo, format="JPEG", quality=85)
    pil("png-24MP-rgb.png", Image.new("RGB", (6000, 4000), (120, 110, 100)), format="PNG")
    return made


def run(code: str, path: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        return [f"crashed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", "?", "?"]
    return proc.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hostile-"))
    rows = []
    head = "| file | bytes | bot path: outcome | bot peak MB | analyze: outcome | analyze peak MB (model) |"
    print(head)
    print("|---|---|---|---|---|---|")
    for path in files(out):
        bot = run(BOT, path)
        cli = run(CLI, path)
        bot_out, bot_mb = " ".join(bot[:-1]), bot[-1]
        cli_out, cli_mb, base = " ".join(cli[:-2]), cli[-2], cli[-1]
        size = path.stat().st_size
        print(f"| {path.name} | {size:,} | {bot_out} | {bot_mb} | {cli_out} | {cli_mb} ({base}) |")
        rows.append({"file": path.name, "bytes": path.stat().st_size, "bot": bot, "cli": cli})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
