"""The package's shape: no import circles, a public surface that is declared, and one message module."""

from __future__ import annotations

import ast
from pathlib import Path

import actorflow

PACKAGE = Path(actorflow.__file__).parent


def _runtime_imports(path: Path) -> set[str]:
    """The actorflow modules a module imports when it is loaded (not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actorflow."):
                found.add(node.module.split(".")[1])
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return found & {p.stem for p in PACKAGE.glob("*.py")}


def test_the_modules_import_each_other_without_a_circle() -> None:
    graph = {p.stem: _runtime_imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def walk(module: str, path: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import circle: " + " -> ".join([*path, module])
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            walk(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        walk(module, [])
    assert graph["_run_context"] == set(), "the run context module is a leaf"
    assert graph["_time"] == set(), "the time conversions are a leaf"


def test_every_module_declares_its_public_names() -> None:
    for path in PACKAGE.glob("*.py"):
        module = ast.parse(path.read_text())
        declared = [n for n in module.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]  # fmt: skip
        assert declared, f"{path.name} has no __all__"


def test_every_public_name_is_documented_and_importable() -> None:
    for name in actorflow.__all__:
        obj = getattr(actorflow, name)
        assert getattr(obj, "__doc__", None), f"actorflow.{name} has no docstring"


def test_only_the_public_messages_are_exported() -> None:
    assert sorted(actorflow.messages.__all__) == ["CancelRun", "SendEvent", "StartRun"]
