"""The engine's shape, read from its own source: no import cycle (function-level imports included), no
module past ~450 lines, few modules loose in `harness/`, and method plugins that import only `harness.api`.

Imports are read with `ast`, never executed. An import inside `if TYPE_CHECKING:` is not an import at run
time and is left out. Importing `a.b.c` runs the `__init__` of `a` and `a.b` too, so those count as edges,
except a package a module is itself inside (Python has already started importing it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "methods")
MAX_LINES = 450
MAX_LOOSE_MODULES = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, package: str) -> list[str]:
    """Every module name an import statement anywhere in `tree` names (`from a import b` gives `a` and
    `a.b`, which may be a submodule), skipping `if TYPE_CHECKING:` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for stmt in child.orelse:
                    visit(stmt)
                continue
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.append(base)
                found.extend(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for target in imported_names(ast.parse(path.read_text()), package):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                implicit_parent = i < len(parts) and name.startswith(prefix + ".")
                if prefix in known and not implicit_parent:
                    edges.add(prefix)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_sees_a_function_level_cycle() -> None:
    tree = ast.parse("def f():\n    from harness.b import x\n")
    assert imported_names(tree, "harness") == ["harness.b", "harness.b.x"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_function_level_imports_included() -> None:
    assert cycles(import_graph()) == []


def test_the_registry_never_imports_the_methods_that_register_into_it() -> None:
    graph = import_graph()
    assert "methods" not in graph["harness.plugins.method"]
    assert "harness.plugins.loading" not in graph["harness.api"]


def test_the_trainer_imports_neither_the_plan_nor_the_plugin_loader() -> None:
    graph = import_graph()
    for module in ("harness.training.trainer", "harness.training.loop", "harness.training.decoupled"):
        assert not graph[module] & {"harness.experiment.plan", "harness.plugins.loading"}, module


def test_no_module_is_longer_than_the_limit() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_few_modules_are_loose_in_harness() -> None:
    loose = sorted(p.name for p in (ROOT / "harness").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose


def test_method_plugins_import_only_the_public_api() -> None:
    graph = import_graph()
    for name in modules():
        if name.startswith("methods."):
            harness_imports = {m for m in graph[name] if m.startswith("harness")}
            assert harness_imports <= {"harness", "harness.api"}, f"{name} imports {harness_imports}"
