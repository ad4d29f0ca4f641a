"""The emotion registry: the model's classes with the words, emoji and colour users see.

The class list (names, in the network's output order) comes from the model manifest, so an
8th class is a manifest change plus retraining. How each class is shown comes from
``emotions.json`` beside this file; a class missing there still works with plain styling.
Every reader (embeds, chart, heatmap render, the recommender's mood map check) takes an
:class:`EmotionRegistry` built once by its process's composition root. No torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.api.manifest import ModelManifest, default_model_dir

FALLBACK_EMOJI = "\N{SLIGHTLY SMILING FACE}"
FALLBACK_COLOUR = 0x95A5A6


class EmotionError(ValueError):
    """The class list or the styles file is unusable."""


@dataclass(frozen=True, slots=True)
class EmotionInfo:
    """One class as users see it: ``You look **fearful**`` (adjective), emoji, embed/chart colour."""

    name: str
    adjective: str
    emoji: str
    colour: int

    @property
    def hex(self) -> str:
        return f"#{self.colour:06x}"

    @property
    def label(self) -> str:
        """Menu label, e.g. ``Fear``."""
        return self.name.capitalize()


class _Style(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    adjective: str = Field(min_length=1, max_length=40)
    emoji: str = Field(min_length=1, max_length=16)
    colour: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


def load_styles(path: Path | None = None) -> dict[str, _Style]:
    """Read and validate ``emotions.json`` (or another styles file)."""
    source = path or Path(str(resources.files("inference.api") / "emotions.json"))
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
        return {str(k): _Style.model_validate(v) for k, v in raw.items()}
    except (OSError, ValueError, ValidationError) as exc:
        raise EmotionError(f"invalid emotion styles {source}: {exc}") from exc


class EmotionRegistry:
    """The classes of one model, in output order, each with its :class:`EmotionInfo`."""

    def __init__(self, names: Sequence[str], styles: Mapping[str, _Style] | None = None) -> None:
        if not names or len(set(names)) != len(names):
            raise EmotionError(f"class names must be non-empty and unique: {list(names)}")
        styles = load_styles() if styles is None else styles
        self.names: tuple[str, ...] = tuple(names)
        self._info = {n: _info(n, styles.get(n)) for n in self.names}

    def __getitem__(self, name: str) -> EmotionInfo:
        """The class's styling; a name the model doesn't have gets plain styling, never a KeyError."""
        return self._info.get(name) or _info(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._info

    def __iter__(self) -> Iterator[EmotionInfo]:
        return iter(self._info.values())

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


def _info(name: str, style: _Style | None) -> EmotionInfo:
    if style is None:
        return EmotionInfo(name, name, FALLBACK_EMOJI, FALLBACK_COLOUR)
    return EmotionInfo(name, style.adjective, style.emoji, int(style.colour[1:], 16))


def load_registry(model_dir: Path | None = None, styles: Path | None = None) -> EmotionRegistry:
    """The registry of the model in ``model_dir`` (default: the shipped one); reads only its manifest."""
    manifest = ModelManifest.load((model_dir or default_model_dir()) / "manifest.json")
    return EmotionRegistry(manifest.classes, load_styles(styles))
