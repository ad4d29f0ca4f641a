from __future__ import annotations

import numpy as np
import torch

from inference.serve.preprocess import faces_to_batch
from inference.training.augment import augment
from inference.training.config import TrainConfig


def test_training_augment_without_randomness_equals_serving_preprocessing() -> None:
    """With every random op switched off, training sees exactly what serving feeds (or its mirror)."""
    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8, generator=gen)
    cfg = TrainConfig(
        data="", val="", out_dir="", rotate_deg=0.0, scale=(1.0, 1.0), translate=0.0, jitter=0.0, erase_p=0.0
    )
    mean, std = (0.51,), (0.3,)
    trained = augment(faces, 48, cfg, mean, std, gen)
    served = faces_to_batch(faces, 48, mean, std)
    for t, s in zip(trained, served, strict=True):
        same = torch.allclose(t, s, atol=1e-4)
        mirrored = torch.allclose(t, s.flip(2), atol=1e-4)
        assert same or mirrored


def test_faces_to_batch_resizes_and_normalises() -> None:
    crops = [np.full((60, 60), 255, dtype=np.uint8), np.zeros((48, 48), dtype=np.uint8)]
    x = faces_to_batch(crops, 32, (0.5,), (0.25,))
    assert x.shape == (2, 1, 32, 32)
    assert torch.allclose(x[0], torch.full_like(x[0], 2.0))
    assert torch.allclose(x[1], torch.full_like(x[1], -2.0))


def test_progressive_schedule() -> None:
    cfg = TrainConfig(data="", val="", out_dir="", schedule=((32, 2), (48, 1)))
    assert [cfg.size_at(e) for e in range(3)] == [32, 32, 48]
    assert cfg.epochs == 3
