"""The shape of the layer, read from its source: imports form no circle, the logic imports no adapter,
and no adapter module grows past the size where it is two modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "common" / "python" / "postpay"
ADAPTER_MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every postpay module ``path`` imports: at the top, under TYPE_CHECKING or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from postpay.adapters import params" names a module; "from postpay.models import X" does not
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    found.discard(_module_name(path))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle in the graph (as the path that closes it), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_the_layer():
    graph = _graph()
    assert "postpay.adapters.tables" in graph["postpay.adapters.accounts_store"]
    assert "postpay.ports" in graph["postpay.services.enrollment"]


def test_the_walk_finds_a_circle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_imports_in_the_layer_form_no_circle():
    assert _cycle(_graph()) is None


def test_the_logic_imports_no_adapter():
    graph = _graph()
    offenders = {
        name: sorted(t for t in targets if t.startswith("postpay.adapters"))
        for name, targets in graph.items()
        if name.startswith(("postpay.billing", "postpay.services"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_adapter_module_is_two_modules():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "adapters").glob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > ADAPTER_MAX_LINES} == {}
