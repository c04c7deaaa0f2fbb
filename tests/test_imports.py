"""The package's import graph: no cycle, data flows down the layers."""

from __future__ import annotations

import ast
import pathlib
from typing import Dict, List, Set

import pidsafe
from pidsafe import _sys

ROOT = pathlib.Path(pidsafe.__file__).parent


def _modules() -> Dict[str, pathlib.Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        parts = ["pidsafe", *f.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph() -> Dict[str, Set[str]]:
    """module -> the pidsafe modules it imports at import time.

    ``from pkg import mod`` depends on ``pkg.mod`` (and on ``pkg`` only for
    names that are not modules); imports under ``if TYPE_CHECKING`` and a
    package's own parents (imported first anyway) do not count.
    """
    mods = _modules()
    graph: Dict[str, Set[str]] = {}
    for name, f in mods.items():
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(f.read_text())
        typing_only = {id(n) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
        deps: Set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")
                if node.level:
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & set(mods)
                deps |= subs
                if (len(subs) < len(node.names) and target in mods
                        and not name.startswith(target + ".")):
                    deps.add(target)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & set(mods)
        graph[name] = deps - {name}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    found: List[List[str]] = []
    state: Dict[str, int] = {}
    path: List[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                found.append(path[path.index(v):] + [v])
            elif v not in state:
                visit(v)
        path.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)
    return found


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_data_flows_down() -> None:
    graph = import_graph()
    # Leaves below every layer: they import nothing of pidsafe.
    leaves = ("pidsafe._version", "pidsafe._value")
    assert graph["pidsafe._value"] == set()
    for name, deps in graph.items():
        if name.startswith("pidsafe._sys"):
            assert all(d.startswith("pidsafe._sys") or d in leaves for d in deps), \
                (name, deps)
        if name.startswith("pidsafe.userns"):
            assert not any(d.startswith("pidsafe.process") for d in deps), (name, deps)


def test_unsafe_clone3_is_not_in_the_cffi_surface() -> None:
    # pidsafe_clone3(fn, arg) runs fn in a child sharing our memory: never
    # callable from Python.
    assert not hasattr(_sys.lib, "pidsafe_clone3")
    assert not any(n.startswith("pidsafe_spawn_") and n != "pidsafe_spawn" for n in dir(_sys.lib))
