"""The package's import graph: no cycle, data flows down the layers, faces only.

The layers ("Layout" in README.md): ``cli``, ``shim`` -> ``container`` -> ``reaper`` ->
``process`` -> (``userns``, ``mount``, ``state``) -> ``_sys``.  Every package
has a face (``__init__`` with ``__all__``), and another package imports only
that face and its public names, never an underscore module or name.  A
package's own subpackages (``container``'s ``config``, ``cgroup``, ``init``)
are layered the same way inside it (:data:`INNER`): each is a package with
a face, and its siblings import it only through that face.  Below
every package sit the foundation modules at the top of ``pidsafe/`` (see
:data:`FOUNDATION`).  The checker reads every import of ``pidsafe/``, those
under ``if TYPE_CHECKING`` and inside functions included.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Dict, FrozenSet, Iterator, List, NamedTuple, Optional, Set, Tuple

import pytest

import pidsafe
from pidsafe import _sys

ROOT = pathlib.Path(pidsafe.__file__).parent

#: The compiled modules: only ``_sys`` imports them (the one gate to the kernel).
COMPILED = {"pidsafe._native": "pidsafe._sys", "pidsafe._libseccomp": "pidsafe._sys"}

#: Modules at the top of ``pidsafe/`` that every layer may import, ``_sys``
#: included: each imports nothing of pidsafe but other foundation modules.
LEAVES = frozenset({
    "pidsafe._version",        # the version string
    "pidsafe._value",          # Frozen and Record: immutable values, cheap to import
    "pidsafe._lazy",           # a face's names imported on first use (PEP 562)
    "pidsafe._sigsafe",        # critical sections a raising signal handler cannot split
    "pidsafe._sigdivert",      # their diversion of signal handlers to a recorder
    "pidsafe._owned",          # the owned-resource base (close, with, ResourceWarning)
    "pidsafe._feature_names",  # kernel features by name, with their first kernel
    "pidsafe._fd",             # OwnedFd
    "pidsafe._log",            # the debug log (logging only if already imported)
    "pidsafe._lite",           # json and signal through their C halves (start-up cost)
    "pidsafe.errors",          # every exception (a package: its modules import only leaves)
})

#: Layers, top to bottom: a package imports packages of lower layers (any
#: number of layers down), its own modules, and the leaves.  ``_features``
#: probes the kernel through ``_sys``, so it sits just above it.
LAYERS = (
    ("pidsafe",),                                     # the top-level face
    ("pidsafe.cli", "pidsafe.shim"),
    ("pidsafe.container",),
    ("pidsafe.reaper",),
    ("pidsafe.process",),
    ("pidsafe.userns", "pidsafe.mount", "pidsafe.state"),
    ("pidsafe._features",),
    ("pidsafe._sys",),
)

#: Imports within one layer: an idmapped mount takes a user namespace's IDMap.
SIDEWAYS = frozenset({("pidsafe.mount", "pidsafe.userns")})

#: Layers inside a package, top to bottom: the package's own modules (for
#: ``container``, the lifecycle) over its subpackages.  A subpackage imports
#: the subpackages below it (through their faces) and the packages below
#: its package; never its package's own modules.
INNER = {
    "pidsafe.container": (
        ("pidsafe.container",),           # the lifecycle: Container, create, exec, hooks
        ("pidsafe.container.init",),      # plan, protocol, start
        ("pidsafe.container.cgroup",),    # v1, v2, hybrid
        ("pidsafe.container.config",),    # OCI JSON -> typed spec
    ),
}

FOUNDATION = LEAVES | {"pidsafe._features"}


def _modules(root: pathlib.Path = ROOT) -> Dict[str, pathlib.Path]:
    mods = {}
    for f in root.rglob("*.py"):
        parts = ["pidsafe", *f.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _typing_only(tree: ast.AST) -> Set[int]:
    return {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}


class Import(NamedTuple):
    """One name one module imports: ``from target import name`` (or ``import target``)."""

    module: str
    line: int
    target: str            # a module of pidsafe
    name: Optional[str]    # a name in ``target`` that is not a module, or None
    typing_only: bool


def imports(mods: Optional[Dict[str, pathlib.Path]] = None) -> Iterator[Import]:
    """Every import of a pidsafe module by a pidsafe module.

    ``from pkg import mod`` imports the module ``pkg.mod``; ``from pkg import
    name`` the name ``name`` of ``pkg``.  ``importlib.import_module("pidsafe.x")``
    with a constant name counts too.
    """
    mods = _modules() if mods is None else mods
    known = set(mods) | set(COMPILED)
    for name, f in sorted(mods.items()):
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(f.read_text())
        typing = _typing_only(tree)
        for node in ast.walk(tree):
            t = id(node) in typing
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")
                if node.level:
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "pidsafe":
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in known:
                        yield Import(name, node.lineno, sub, None, t)
                    else:
                        yield Import(name, node.lineno, target, a.name, t)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "pidsafe":
                        yield Import(name, node.lineno, a.name, None, t)
            elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module")
                  and node.args and isinstance(node.args[0], ast.Constant)
                  and str(node.args[0].value).startswith("pidsafe.")):
                yield Import(name, node.lineno, str(node.args[0].value), None, t)


def import_graph() -> Dict[str, Set[str]]:
    """module -> the pidsafe modules it imports at import time.

    ``from pkg import mod`` depends on ``pkg.mod`` (and on ``pkg`` only for
    names that are not modules); imports under ``if TYPE_CHECKING`` and a
    package's own parents (imported first anyway) do not count.
    """
    mods = _modules()
    graph: Dict[str, Set[str]] = {name: set() for name in mods}
    for imp in imports(mods):
        if imp.typing_only or imp.target not in mods:
            continue
        if imp.name is not None and imp.module.startswith(imp.target + "."):
            continue   # a name of one's own parent package
        graph[imp.module].add(imp.target)
    for name in graph:
        graph[name].discard(name)
    return graph


def package_of(module: str) -> str:
    """The package a module belongs to: ``pidsafe.X`` for a subpackage's
    modules (``pidsafe.X.Y`` for those of a subpackage of its own in
    :data:`INNER`), the module itself for one at the top of ``pidsafe/``."""
    for layers in INNER.values():
        for layer in layers[1:]:
            for inner in layer:
                if module == inner or module.startswith(inner + "."):
                    return inner
    parts = module.split(".")
    head = ".".join(parts[:2])
    if len(parts) >= 2 and ((ROOT / parts[1]).is_dir() or any(head in l for l in LAYERS)):
        return head
    return module


def outer_of(package: str) -> str:
    """The package of :data:`LAYERS` that ``package`` is, or is inside."""
    return next((outer for outer, layers in INNER.items()
                 if any(package in layer for layer in layers)), package)


def _rank(package: str, layers: Tuple[Tuple[str, ...], ...] = LAYERS) -> Optional[int]:
    for i, layer in enumerate(layers):
        if package in layer:
            return i
    return None


def violations(found: List[Import], packages: FrozenSet[str]) -> List[str]:
    """What breaks the layers in ``found`` (``packages``: the
    subpackages that exist, each of which must have a layer)."""
    out = []
    for p in sorted(packages):
        if _rank(outer_of(p)) is None and p not in LEAVES:
            out.append(f"{p}: a package with no layer in tests/test_imports.py")
    for imp in found:
        src, dst = package_of(imp.module), package_of(imp.target)
        where = f"{imp.module}:{imp.line}: imports {imp.target}" + (
            f".{imp.name}" if imp.name else "")
        if src == dst:
            continue
        if imp.target in COMPILED:
            if src != COMPILED[imp.target]:
                out.append(f"{where}: only {COMPILED[imp.target]} imports a compiled module")
            continue
        if imp.target != dst:
            out.append(f"{where}: another package's underscore module; import its face {dst}")
        elif imp.name is not None and imp.name.startswith("_") and not imp.name.endswith("__"):
            out.append(f"{where}: an underscore name of another package")
        if src in LEAVES:
            if dst not in LEAVES:
                out.append(f"{where}: a leaf imports only leaves")
            continue
        if dst in LEAVES:
            continue
        if outer_of(src) == outer_of(dst):   # two parts of one package
            ri, rj = _rank(src, INNER[outer_of(src)]), _rank(dst, INNER[outer_of(src)])
            if ri is None or rj is None or rj <= ri:
                out.append(f"{where}: {dst} is not below {src} (INNER)")
            continue
        rs, rd = _rank(outer_of(src)), _rank(outer_of(dst))
        if rs is None or rd is None:
            out.append(f"{where}: {src if rs is None else dst} has no layer")
        elif rd <= rs and (outer_of(src), outer_of(dst)) not in SIDEWAYS:
            out.append(f"{where}: {dst} is not below {src} (README.md, \"Layout\")")
    return out


def _subpackages() -> FrozenSet[str]:
    """Every package under ``pidsafe/``, those inside subpackages included."""
    return frozenset(".".join(("pidsafe", *f.parent.relative_to(ROOT).parts))
                     for f in ROOT.rglob("__init__.py") if f.parent != ROOT)


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
    # Leaves below every layer: they import nothing of pidsafe.  (_sigsafe:
    # the locator's sealed copies go from made to owned in one critical
    # section, _sys/_sealed.py; it reaches the signal functions through _lite.)
    leaves = ("pidsafe._version", "pidsafe._value", "pidsafe._sigsafe", "pidsafe._lite")
    assert graph["pidsafe._value"] == set()
    for name, deps in graph.items():
        if name.startswith("pidsafe._sys"):
            assert all(d.startswith("pidsafe._sys") or d in leaves for d in deps), \
                (name, deps)
        if name.startswith("pidsafe.userns"):
            assert not any(d.startswith("pidsafe.process") for d in deps), (name, deps)


def test_layers_and_faces() -> None:
    """Every import of pidsafe/ keeps the layers and goes through faces."""
    assert violations(list(imports()), _subpackages()) == []


def test_the_checker_sees_the_imports() -> None:
    found = list(imports())
    # One of each kind it reads: a plain, a typing-only, a compiled-module import.
    assert any(i.module == "pidsafe.reaper._reaper" and i.target == "pidsafe.process"
               for i in found)
    assert any(i.typing_only and i.module.startswith("pidsafe.container") for i in found)
    assert any(i.target == "pidsafe._native" and i.module == "pidsafe._sys._core" for i in found)
    # A subpackage importing a sibling's face.
    assert any(i.module == "pidsafe.container.cgroup._resources"
               and i.target == "pidsafe.container.config" for i in found)


@pytest.mark.parametrize("imp, why", [
    (Import("pidsafe.process._spawn", 1, "pidsafe.reaper", "Reaper", False), "not below"),
    (Import("pidsafe.userns._idmap", 1, "pidsafe.mount", "Mount", True), "not below"),
    (Import("pidsafe.state._statefile", 1, "pidsafe.userns", "IDMap", False), "not below"),
    (Import("pidsafe.container.init._seccomp_filter", 1, "pidsafe._sys._seccomp", None, False),
     "underscore module"),
    (Import("pidsafe.container.init._plan", 1, "pidsafe.mount._spec", "Mount", False),
     "underscore module"),
    (Import("pidsafe.cli", 1, "pidsafe.process", "_abandoned", False), "underscore name"),
    (Import("pidsafe.cli", 1, "pidsafe._features", "_probe", False), "underscore name"),
    (Import("pidsafe.errors", 1, "pidsafe.mount", "Mount", True), "a leaf imports only"),
    (Import("pidsafe.errors._mount", 1, "pidsafe.mount", "Mount", True), "a leaf imports only"),
    (Import("pidsafe.mount._mounted", 1, "pidsafe.errors._mount", "mount_error", False),
     "underscore module"),
    (Import("pidsafe._sys._core", 1, "pidsafe._features", "features", False), "not below"),
    (Import("pidsafe.container.init._seccomp_filter", 1, "pidsafe._libseccomp", None, False),
     "only pidsafe._sys"),
    (Import("pidsafe.shim._x", 1, "pidsafe.cli", "main", False), "not below"),
    # Inside container: the lifecycle over init over cgroup over config, faces only.
    (Import("pidsafe.container._create", 1, "pidsafe.container.init._plan", "plan_init", False),
     "underscore module"),
    (Import("pidsafe.container.cgroup._cgroup", 1, "pidsafe.container.config._linux",
            "Resources", True), "underscore module"),
    (Import("pidsafe.container.config._spec", 1, "pidsafe.container.cgroup", "Cgroup", False),
     "not below"),
    (Import("pidsafe.container.cgroup._cgroup", 1, "pidsafe.container.init", "Op", False),
     "not below"),
    (Import("pidsafe.container.init._start", 1, "pidsafe.container", "Container", False),
     "not below"),
    (Import("pidsafe.container.init._start", 1, "pidsafe.container.config", "_reader", False),
     "underscore name"),
    (Import("pidsafe.container.config._spec", 1, "pidsafe.shim", "Shim", False), "not below"),
])
def test_the_checker_finds_a_wrong_import(imp: Import, why: str) -> None:
    found = violations([imp], frozenset())
    assert len(found) == 1 and why in found[0], found


def test_the_checker_passes_right_imports() -> None:
    right = [
        Import("pidsafe.reaper._reaper", 1, "pidsafe.process", "Process", False),
        Import("pidsafe.mount._spec", 1, "pidsafe.userns", "IDMap", False),
        Import("pidsafe.cli", 1, "pidsafe.userns", "IDMap", False),
        Import("pidsafe._sys._core", 1, "pidsafe._native", None, False),
        Import("pidsafe._sys._core", 1, "pidsafe._version", None, False),
        Import("pidsafe.process._process", 1, "pidsafe.process._lease", None, False),
        Import("pidsafe.mount._rootfs", 1, "pidsafe._features", "features", False),
        Import("pidsafe", 1, "pidsafe.container", "Container", True),
        Import("pidsafe.container._create", 1, "pidsafe.container.init", "plan_init", False),
        Import("pidsafe.container.init._plan", 1, "pidsafe.container.config", "Spec", False),
        Import("pidsafe.container.cgroup._cgroup", 1, "pidsafe.container.config", "Resources",
               True),
        Import("pidsafe.container.config._spec", 1, "pidsafe.userns", "IDMap", False),
        Import("pidsafe.container.cgroup._cgroup", 1, "pidsafe.container.cgroup._files", None,
               False),
        Import("pidsafe.cli", 1, "pidsafe.container", "Container", False),
        # The errors package: a leaf whose modules import each other and leaves.
        Import("pidsafe.errors._mount", 1, "pidsafe.errors._base", "Error", False),
        Import("pidsafe.errors._base", 1, "pidsafe._feature_names", "describe", False),
        Import("pidsafe.errors", 1, "pidsafe._lazy", "exports", False),
    ]
    assert violations(right, frozenset({"pidsafe.process"})) == []
    assert violations([], frozenset({"pidsafe.newpkg"})) == [
        "pidsafe.newpkg: a package with no layer in tests/test_imports.py"]
    assert violations([], frozenset({"pidsafe.container.config", "pidsafe.process"})) == []
    assert violations([], frozenset({"pidsafe.errors"})) == []
    assert violations([], frozenset({"pidsafe.mount.newsub"})) == [
        "pidsafe.mount.newsub: a package with no layer in tests/test_imports.py"]


def test_subpackages_are_packages_of_their_own() -> None:
    assert package_of("pidsafe.container.config._spec") == "pidsafe.container.config"
    assert package_of("pidsafe.container.config") == "pidsafe.container.config"
    assert package_of("pidsafe.container._create") == "pidsafe.container"
    assert package_of("pidsafe.container") == "pidsafe.container"
    assert {"pidsafe.container.config", "pidsafe.container.cgroup",
            "pidsafe.container.init"} <= _subpackages()


def test_every_package_has_a_face() -> None:
    for pkg in sorted(_subpackages()):
        mod = __import__(pkg, fromlist=["__all__"])
        assert mod.__all__, pkg
        assert all(not n.startswith("_") for n in mod.__all__), pkg
        for name in mod.__all__:
            assert getattr(mod, name) is not None, (pkg, name)


def test_the_top_level_face_uses_faces() -> None:
    for name, module in pidsafe._EXPORTS.items():
        target = f"pidsafe{module}"
        assert target == package_of(target), (name, module)


def test_unsafe_clone3_is_not_in_the_cffi_surface() -> None:
    # pidsafe_clone3(fn, arg) runs fn in a child sharing our memory: never
    # callable from Python.
    assert not hasattr(_sys.lib, "pidsafe_clone3")
    assert not any(n.startswith("pidsafe_spawn_") and n != "pidsafe_spawn" for n in dir(_sys.lib))


#: The one child-start path (DESIGN.md, "process/"): the only caller of
#: ``_sys.spawn`` (module, function).
CHILD_START = ("pidsafe.process._start", "start_child")


def spawn_calls(mods: Optional[Dict[str, pathlib.Path]] = None) -> List[Tuple[str, str]]:
    """Every call of ``_sys.spawn`` (or a ``spawn`` imported from ``_sys``) in
    ``pidsafe/``: ``(module, enclosing function)``."""
    found: List[Tuple[str, str]] = []
    for module, path in sorted((mods if mods is not None else _modules()).items()):
        tree = ast.parse(path.read_text())
        from_sys = {alias.asname or alias.name for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module
                    and node.module.split(".")[-1] == "_sys"
                    for alias in node.names if alias.name == "spawn"}
        if module == "pidsafe._sys._spawn":
            continue   # where it is defined

        def visit(node: ast.AST, where: str) -> None:
            for child in ast.iter_child_nodes(node):
                inner = where
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    inner = child.name
                if isinstance(child, ast.Call):
                    func = child.func
                    if ((isinstance(func, ast.Attribute) and func.attr == "spawn"
                         and ast.unparse(func.value).split(".")[-1] == "_sys")
                            or (isinstance(func, ast.Name) and func.id in from_sys)):
                        found.append((module, where))
                visit(child, inner)

        visit(tree, "")
    return found


def test_only_the_child_start_path_calls_sys_spawn() -> None:
    # Container init, exec and spawn() start their children through
    # process.start_process: one error pipe, one failure-record decoder.
    assert spawn_calls() == [CHILD_START]


def test_the_spawn_call_checker_finds_one(tmp_path: pathlib.Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("from pidsafe import _sys\nfrom .._sys import spawn as s\n"
                   "def start(spec):\n    return _sys.spawn(spec)\n"
                   "def other(spec):\n    return s(spec)\n")
    assert spawn_calls({"pidsafe.m": mod}) == [("pidsafe.m", "start"), ("pidsafe.m", "other")]
