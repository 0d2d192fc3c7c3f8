"""The package layout the project promises (see ../shared/STYLE.md): one folder per method beside
``agents/common``, no import circle between modules, and no module reaching outside its package by path."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "kd_envs")
METHODS = ("iq", "n2n", "rlkd", "search", "temperature")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere (function-level imports included): ``from a.b import c``
    names a.b.c when that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
    return found & known


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_import_cycles_are_found():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_modules():
    mods = modules()
    # A package's __init__ re-exports its modules; an edge into a package is an edge into its __init__.
    graph = {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}
    assert import_cycles(graph) == []


def test_kd_envs_imports_no_agent():
    mods = modules()
    for name, path in mods.items():
        if name.startswith("kd_envs"):
            assert not any(m.startswith("agents") for m in imports_of(path, set(mods))), name


@pytest.mark.parametrize("method", METHODS)
def test_each_method_has_its_folder(method):
    folder = ROOT / "agents" / method
    assert (folder / "__init__.py").is_file()
    # methods build on agents.common, never on another method's internals or on the training harness
    mods = modules()
    for path in folder.glob("*.py"):
        for imported in imports_of(path, set(mods)):
            if imported.startswith("agents.") and not imported.startswith(("agents.common", f"agents.{method}")):
                pytest.fail(f"{path.relative_to(ROOT)} imports {imported}")


def test_no_module_reaches_outside_its_package_by_path():
    outside = re.compile(r"__file__\)?(\.resolve\(\))?\.(parent\.parent|parents\[)")
    offenders = [str(p.relative_to(ROOT)) for p in modules().values() if outside.search(p.read_text())]
    assert offenders == []


def test_the_tasks_graph_is_read():
    mods = modules()
    assert "kd_envs.tasks.architecture" in imports_of(mods["kd_envs.tasks.models"], set(mods))
    assert "kd_envs.tasks.models" in imports_of(mods["kd_envs.tasks.task"], set(mods))


def test_architecture_knows_nothing_of_the_model_families():
    # One definition per family: the layer specs build on nothing else in kd_envs.tasks.
    mods = modules()
    imported = imports_of(mods["kd_envs.tasks.architecture"], set(mods))
    assert {m for m in imported if m.startswith("kd_envs.tasks")} == set()
