"""core/ has no import circle: every `from core... import` (at module level or inside a function, where a lazy
import would hide one) forms an acyclic graph. Imports under `if TYPE_CHECKING:` are for annotations only.

Modules are named by their dotted path (`tasks.text2img`); a package's `__init__` is the package's name. A package
that finds its modules itself (core.tasks loads every task module beside it) depends on all of them."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"


def _name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = set()

    def add(dotted: str) -> None:
        # `core.tasks.base` -> `tasks.base`; a name that is not a module (`from core.tasks import TASKS`) is its package
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        if dotted:
            found.add(dotted)

    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and (node.module == "core" or node.module.startswith("core."))
        ):
            base = node.module.removeprefix("core").removeprefix(".")
            for alias in node.names:
                add(f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("core."):
                    add(alias.name.removeprefix("core."))
    if "pkgutil.iter_modules" in ast.unparse(tree):  # a package that imports every module in it
        package = _name(path)
        # ...but for `_`-named ones, which it skips (core.tasks.__main__ prints the README table and imports it)
        found |= {m for m in modules if m.startswith(f"{package}.") and not m.rpartition(".")[2].startswith("_")}
    return found - {_name(path)}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_core_has_no_import_circle():
    files = list(CORE.rglob("*.py"))
    modules = {_name(p) for p in files}
    graph = {_name(p): _imports(p, modules) for p in files}
    assert {"tasks", "tasks.base", "tasks.text2img"} <= set(graph), "subpackages are read"
    assert sum(len(deps) for deps in graph.values()) > 40, "the graph was read"
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_check_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
