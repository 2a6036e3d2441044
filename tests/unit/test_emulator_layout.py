"""Emulator layout (issue 10.6): imports inside fichierfs/emulator run one way (no cycle, not even under
TYPE_CHECKING), and no handler reaches into the service's private fields."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "fichierfs" / "emulator"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__") or "__init__"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        name = _module(path)
        base = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                parent = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*parent, *(node.module or "").split(".")]).strip(".")
                deps.add(target)
        graph[name] = deps
    return graph


def test_no_import_cycle() -> None:
    graph = _graph()
    assert "core" in graph and "pipeline" in graph and "handlers.transfer" in graph
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == 2 or n not in graph:
            return
        assert state.get(n) != 1, "import cycle: " + " -> ".join([*stack, n])
        state[n] = 1
        for d in graph[n]:
            visit(d, [*stack, n])
        state[n] = 2

    for n in graph:
        if n != "__init__":
            visit(n, [])
    assert "core" not in {d for n, ds in graph.items() if n not in ("__init__", "__main__", "server") for d in ds}


def test_handlers_use_service_methods() -> None:
    for path in [*PKG.glob("handlers/*.py"), PKG / "pipeline.py", PKG / "app.py"]:
        text = path.read_text()
        assert not re.search(r"\b(svc|emu)\._[a-z]", text), path.name
