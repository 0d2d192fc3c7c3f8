"""kd_envs.tasks: the modules import one another one way (no circle, not even a lazy import inside a
function), so each model family has one definition that the others build on."""

import ast
from pathlib import Path

import kd_envs.tasks

PACKAGE = "kd_envs.tasks"
ROOT = Path(kd_envs.tasks.__file__).parent


def _imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports anywhere in its body (function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == PACKAGE:  # ``from kd_envs.tasks import models``
                names += [f"{PACKAGE}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith(PACKAGE + "."))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {f"{PACKAGE}.{p.stem}": p for p in ROOT.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def test_the_graph_is_read():
    graph = _graph()
    assert f"{PACKAGE}.architecture" in graph[f"{PACKAGE}.models"]
    assert f"{PACKAGE}.models" in graph[f"{PACKAGE}.task"]


def test_architecture_knows_nothing_of_the_model_families():
    assert _graph()[f"{PACKAGE}.architecture"] == set()


def test_no_import_circle_in_the_tasks_package():
    graph = _graph()
    done, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError(f"import circle: {' -> '.join(path[path.index(module) :] + [module])}")
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
