"""Writing the explanation picture (a JPEG from the worker) to a file the CLIs were given."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

# suffix -> Pillow format for the files we convert to; any other name gets the JPEG as sent
CONVERT = {".png": "PNG", ".webp": "WEBP"}


def write_heatmap(path: Path, jpeg: bytes) -> None:
    """Write the heatmap to ``path``: the JPEG bytes as they are, or converted when the name ends
    in ``.png`` / ``.webp`` (so ``--heatmap heatmap.png`` keeps giving a PNG)."""
    fmt = CONVERT.get(path.suffix.lower())
    if fmt is None:
        path.write_bytes(jpeg)
        return
    with Image.open(io.BytesIO(jpeg)) as im:
        im.save(path, format=fmt)
