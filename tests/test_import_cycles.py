"""No import cycles, between files or between packages (every import counts, lazy ones too)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "inference", "recommender")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: Iterable[str] = ()
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                # the longest known module the name refers to
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _collapse(graph: dict[str, set[str]], key: object) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, bs in graph.items():
        ka = key(a)  # type: ignore[operator]
        out.setdefault(ka, set())
        for b in bs:
            kb = key(b)  # type: ignore[operator]
            if kb != ka:
                out[ka].add(kb)
    return out


def _package(module: str) -> str:
    """The folder a module lives in (a package's __init__ belongs to the package itself)."""
    path = ROOT / Path(*module.split("."))
    return module if path.is_dir() else module.rpartition(".")[0]


def test_no_cycle_between_files() -> None:
    graph = _graph()
    # a package's __init__ importing its own submodules is not a file loop; ours import nothing
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_cycle_between_packages() -> None:
    graph = _graph()
    for level in (_package, lambda m: m.split(".")[0]):
        collapsed = _collapse(graph, level)
        assert _cycle(collapsed) is None, " -> ".join(_cycle(collapsed) or [])


def test_the_detector_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_bot_reaches_inference_only_through_the_api() -> None:
    graph = _graph()
    for mod, deps in graph.items():
        if mod.split(".")[0] in ("bot", "recommender"):
            bad = {d for d in deps if d.startswith("inference") and not d.startswith("inference.api")}
            assert not bad, f"{mod} imports {bad}"
        if mod.startswith("recommender"):
            assert not {d for d in deps if d.startswith(("inference", "bot"))}, mod
