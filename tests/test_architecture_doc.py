"""The data-path picture at the top of docs/architecture.md names real code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _mermaid() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md opens with a mermaid picture of the data path"
    return match.group(1)


def test_every_box_of_the_data_path_names_code_that_exists() -> None:
    names = re.findall(r"\b([a-z_]+(?:\.[a-z_]+)+):([A-Za-z_][A-Za-z_.]*)", _mermaid())
    assert len(names) >= 15
    for module, qualname in names:
        obj: object = importlib.import_module(module)
        for part in qualname.split("."):
            assert hasattr(obj, part), f"{module}:{qualname} (docs/architecture.md) is not in the code"
            obj = getattr(obj, part)


def test_the_picture_goes_from_the_photo_to_the_reply_and_the_history() -> None:
    graph = _mermaid()
    steps = ("check_mood", "submit", "Worker.run", "analyze_many", "finish", "record_reading", "reply_for")
    for step in steps:
        assert step in graph
