"""Load ImageFolder face datasets into memory as uint8 tensors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# FER2013's seven classes in ImageFolder (alphabetical) order: what `moodring train` learns by
# default and writes into the manifest. Serving reads the class list from the manifest, never this.
FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


class DatasetError(ValueError):
    """The dataset folder does not have the expected ImageFolder layout."""


@dataclass(frozen=True, slots=True)
class FaceSet:
    """Images (N, size, size) uint8 grey, labels indexed into ``classes``, and file paths."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    paths: tuple[Path, ...]


def list_imagefolder(root: Path, classes: tuple[str, ...] = FER2013_CLASSES) -> list[tuple[Path, int]]:
    """List (path, class index) pairs, mapping sub-folders to ``classes`` by name.

    Missing classes are allowed; a folder whose name is not a known class is an error.
    """
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory")
    index = {name: i for i, name in enumerate(classes)}
    items: list[tuple[Path, int]] = []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if p.name.lower() not in index]
    if unknown:
        raise DatasetError(f"{root}: unknown class folders {unknown}; expected some of {list(classes)}")
    for folder in folders:
        label = index[folder.name.lower()]
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                items.append((path, label))
    if not items:
        raise DatasetError(f"{root}: no images found")
    return items


def load_faces(root: Path, size: int = 48, classes: tuple[str, ...] = FER2013_CLASSES) -> FaceSet:
    """Decode a pre-cropped face ImageFolder tree to grey ``size``x``size`` uint8."""
    items = list_imagefolder(root, classes)
    images = np.empty((len(items), size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (size, size):
                grey = grey.resize((size, size), Image.Resampling.BILINEAR)
            images[i] = np.asarray(grey)
    labels = torch.tensor([label for _, label in items], dtype=torch.long)
    log.info("loaded %d images from %s", len(items), root)
    return FaceSet(torch.from_numpy(images), labels, classes, tuple(p for p, _ in items))
