from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from inference.training.degrade import degrade, jpeg_luma


def _faces(n: int = 6, side: int = 48) -> torch.Tensor:
    """Grey 48 px crops of the sample portrait (real image statistics), (n, 1, side, side) in [0, 1]."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        grey = im.convert("L")
    out = []
    for i in range(n):
        box = (60 + 20 * i, 80 + 10 * i, 360 + 20 * i, 380 + 10 * i)
        out.append(np.asarray(grey.resize((side, side), Image.Resampling.BOX, box=box), dtype=np.float32))
    return torch.from_numpy(np.stack(out) / 255).unsqueeze(1)


def _pillow_jpeg(face: torch.Tensor, quality: int) -> torch.Tensor:
    pixels = (face[0].numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="JPEG", quality=quality)
    with Image.open(buf) as im:
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).unsqueeze(0)


@pytest.mark.parametrize("quality", [20, 50])
def test_jpeg_simulation_matches_pillows_encoder(quality: int) -> None:
    faces = _faces()
    ours = jpeg_luma(faces, torch.full((len(faces),), float(quality)))
    real = torch.stack([_pillow_jpeg(f, quality) for f in faces])
    artefacts = (real - faces).abs().mean()
    assert artefacts > 2 / 255  # the compression did something we can be compared on
    assert (ours - real).abs().mean() < 0.1 * artefacts  # measured: 0.02-0.05 of it


def test_degrade_off_is_identity_and_on_changes_every_face_within_range() -> None:
    faces = _faces(8)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(degrade(faces, 0.0, gen), faces)
    out = degrade(faces, 1.0, torch.Generator().manual_seed(1))
    assert out.shape == faces.shape and out.dtype == faces.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert bool(((out - faces).abs().mean(dim=(1, 2, 3)) > 1e-3).all())
    again = degrade(faces, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # every draw comes from the generator


@pytest.mark.parametrize("side", [32, 40, 48])
def test_degrade_works_at_every_training_size(side: int) -> None:
    out = degrade(_faces(4, side), 0.5, torch.Generator().manual_seed(2))
    assert out.shape == (4, 1, side, side)
