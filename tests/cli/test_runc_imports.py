"""pidsafe-runc's commands import only what they use (start-up is their cost).

Every command is a new interpreter.  start, state, kill and delete of a
container load it from its state file: they must not import the config
parser, the planner, pidsafe-init's protocol, the spawn machinery, the
mount layer, :mod:`dataclasses`, :mod:`subprocess` or even :mod:`typing`
(the modules they use import it only for mypy, ``TYPE_CHECKING``), nor
the CLI modules of other commands (runc.py is only the dispatcher).  Each command
runs in a subprocess that writes its ``sys.modules`` to a file.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
from typing import Any, Iterator, List, Set

import pytest

import pidsafe

pytestmark = pytest.mark.root

ENTRY = ("import sys\n"
         "from pidsafe.cli.runc import main\n"
         "code = main(sys.argv[2:])\n"
         "with open(sys.argv[1], 'w') as f:\n"
         "    f.write('\\n'.join(sorted(sys.modules)))\n"
         "sys.exit(code)\n")

#: What only create (or exec) needs.
CREATE_ONLY = (
    "pidsafe.container.config._spec", "pidsafe.container.config._linux",
    "pidsafe.container.config._process", "pidsafe.container.config._reader",
    "pidsafe.container.config._spec_keys",
    "pidsafe.container.init._plan", "pidsafe.container.init._plan_mounts",
    "pidsafe.container.init._builder", "pidsafe.container.init._enter",
    "pidsafe.container._create", "pidsafe.container.init._start",
    "pidsafe.container.init._protocol", "pidsafe.container._exec", "pidsafe.container._stdio",
    "pidsafe.container.cgroup._resources", "pidsafe.container.cgroup._stats",
    "pidsafe.container.cgroup._join",
    "pidsafe.container.config._seccomp", "pidsafe.container.init._seccomp_filter",
    "pidsafe._sys._seccomp", "pidsafe._libseccomp", "pidsafe._sys._spawn", "pidsafe._sys._libexec",
    "pidsafe._sys._psi", "pidsafe._sys._prctl", "pidsafe._sys._bpf", "pidsafe.process._spawn",
    "pidsafe.process._child", "pidsafe.userns", "pidsafe.mount", "pidsafe._features",
    "pidsafe.reaper", "hashlib", "socket", "argparse", "asyncio", "ctypes",
)
#: The command lines' errors (UsageError, with the shim's wire errors): imported
#: only to raise one (pidsafe.cli.runc.usage_error), never by a command that runs.
USAGE_ERRORS = ("pidsafe.errors._frontends",)
#: The errors of a config (only create and run parse one) and of the reaper
#: (no command runs one): their classes are made only by who may raise them.
CONFIG_ERRORS = ("pidsafe.errors._config",)
REAPER_ERRORS = ("pidsafe.errors._reaper",)
#: What create of a plain bundle (no user namespace, no rootfs mounts, stdio
#: inherited) does without: OpenSSL, spawn()'s machinery, the mount and
#: user-namespace helpers, the feature probes.
CREATE_AVOIDS = (
    "hashlib", "_hashlib", "socket", "argparse", "asyncio", "ctypes", "subprocess",
    "pidsafe.process._spawn", "pidsafe.process._child", "pidsafe.userns._helper",
    "pidsafe.userns._cache", "pidsafe.mount._rootfs", "pidsafe.mount._mount",
    "pidsafe.mount._unmount_all", "pidsafe._features", "pidsafe.reaper",
    # No overlay mount: not the overlay layer (fs contexts, the mount hints).
    "pidsafe.mount._overlay", "pidsafe.mount._hints",
    # No linux.seccomp: libseccomp is not even loaded.
    "pidsafe.container.init._seccomp_filter", "pidsafe._sys._seccomp", "pidsafe._libseccomp",
    "pidsafe.container.config._seccomp",
    # No process.terminal: no console socket.
    "pidsafe.container._console",
    # Nothing in config.json to ignore or refuse: no table of the spec's properties.
    "pidsafe.container.config._spec_keys",
    # The config model and the plan are Records (pidsafe/_value.py), not dataclasses:
    # dataclasses and the inspect it imports (ast, dis, tokenize) cost ~5 ms.
    "dataclasses", "inspect", "ast", "dis", "tokenize",
    # typing only for mypy (TYPE_CHECKING), config.json read by json's C half
    # (pidsafe/_lite.py): no typing, re, enum, json, signal or threading.
    "typing", "re", "enum", "json", "signal", "threading", "functools", "collections",
    "contextlib", "types",
    # Nothing in config.json to ignore: no warning to silence, and the
    # silencing itself does without warnings (pidsafe/_lite.py).
    "warnings",
) + USAGE_ERRORS + REAPER_ERRORS
#: The CLI's modules for commands other than start, state, kill, delete.
OTHER_COMMANDS = ("pidsafe.cli._runc_create", "pidsafe.cli._runc_exec",
                  "pidsafe.cli._runc_process", "pidsafe.cli._relay", "pidsafe.cli._runc_cgroup",
                  "pidsafe.cli._runc_features")
#: What no command on a saved container needs: json (it imports re, which
#: imports enum), signal (its enums) and threading (functools, collections) have
#: lighter C halves (pidsafe/_lite.py); importlib (it imports warnings) has
#: the import statement (pidsafe/_lazy.py), and warnings is imported only to warn.
LIGHT = ("re", "enum", "json", "signal", "threading", "functools", "collections",
         "importlib", "warnings",
         # types only for annotations (TYPE_CHECKING): TracebackType, FrameType
         "types")
#: The kernel boundary's mount, namespace and user-namespace calls: no command
#: on a saved container with its own mount namespace makes them (only create
#: does, and delete of rootfs mounts, which pidsafe-runc never makes).
NO_MOUNTS = ("pidsafe._sys._mount", "pidsafe._sys._ns", "pidsafe._sys._userns")
#: start, state, kill: a state file, a pidfd, a signal.
LOAD_ONLY = (CREATE_ONLY + OTHER_COMMANDS + LIGHT + NO_MOUNTS + USAGE_ERRORS + CONFIG_ERRORS
             + REAPER_ERRORS) + (
    "pidsafe.container._records", "pidsafe.container.cgroup._cgroup",
    "pidsafe.container.cgroup._files", "pidsafe.container.cgroup._layout",
    "pidsafe.container.cgroup._freezer", "pidsafe.container.cgroup._signal",
    "dataclasses", "inspect", "subprocess", "logging", "typing", "selectors",
    # ASCII files are read as UTF-8, whose codec every interpreter has loaded.
    "encodings.ascii")


#: The compiled module and what loads it: start and state hold a saved
#: container's init without them (ProcessIdentity.open: os.pidfd_open).
COMPILED = ("_cffi_backend", "pidsafe._native", "pidsafe._sys._core", "pidsafe._sys._pidfd")


#: What ``delete`` may import of the mount layer: the one mountinfo parser
#: (the cgroup layout is read with it).
MOUNTINFO_PARSER = ("pidsafe.mount", "pidsafe.mount._mountinfo")


def heavy(modules: Set[str], forbidden: Any) -> List[str]:
    return sorted(m for m in modules for f in forbidden if m == f or m.startswith(f + "."))


@pytest.fixture
def subreaper() -> Iterator[pidsafe.Reaper]:
    with pidsafe.Reaper(subreaper=True) as r:
        yield r


def run(reaper: pidsafe.Reaper, root: pathlib.Path, *args: str) -> Set[str]:
    """One CLI command in a new interpreter: the modules it imported."""
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryFile() as out:
        mods = pathlib.Path(d) / "modules"
        # Files, not pipes: a created container inherits the CLI's stdio.
        with reaper.spawn([sys.executable, "-c", ENTRY, str(mods), "--root", str(root), *args],
                          stdout=out, stderr=out, stdin=pidsafe.DEVNULL) as p:
            code = p.wait(timeout=60)
        out.seek(0)
        assert code == 0, (args, out.read().decode())
        return set(mods.read_text().split())


def test_commands_on_a_container_import_only_what_they_use(
        subreaper: pidsafe.Reaper, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    bundle = str(make_bundle(["sleep", "1000"]))
    try:
        created = run(subreaper, root, "create", "--bundle", bundle, "c1")
        # The guard sees imports: create has the heavy modules.
        assert {"pidsafe.container._create", "pidsafe.container.config._spec",
                "pidsafe.container.init._plan"} <= created
        assert heavy(created, CREATE_AVOIDS) == []
        assert "pidsafe.cli._runc_create" in created
        assert heavy(created, ("pidsafe.cli._runc_ops", "pidsafe.cli._runc_exec",
                               "pidsafe.cli._runc_cgroup", "pidsafe.cli._runc_features",
                               "pidsafe.cli._relay")) == []
        for args in (("state", "c1"), ("start", "c1"), ("state", "c1"),
                     ("kill", "c1", "KILL")):
            loaded = run(subreaper, root, *args)
            assert "pidsafe.cli._runc_ops" in loaded, args
            assert heavy(loaded, LOAD_ONLY) == [], args
            if args[0] != "kill":
                # init held again by the stdlib's pidfd calls: no compiled module
                # (kill signals through _sys, which loads it).
                assert heavy(loaded, COMPILED) == [], args
        deleted = run(subreaper, root, "delete", "--force", "c1")
        assert "pidsafe.container.cgroup._cgroup" in deleted   # it removed the cgroup
        # The cgroup layout comes from the mount layer's mountinfo parser:
        # that module (and the mount layer's face), nothing else of it.
        assert heavy(deleted - set(MOUNTINFO_PARSER), CREATE_ONLY + OTHER_COMMANDS + LIGHT
                     + NO_MOUNTS + USAGE_ERRORS + CONFIG_ERRORS + REAPER_ERRORS
                     + ("dataclasses", "inspect", "subprocess", "logging", "typing",
                        "selectors")) == []
        # containerd's shim deletes again, with --force, once it is gone.
        again = run(subreaper, root, "delete", "--force", "c1")
        assert heavy(again, LOAD_ONLY + ("pidsafe._sys", "pidsafe.process", "_cffi_backend")) == []
    finally:
        for cid in pidsafe.Container.list(str(root)):
            run(subreaper, root, "delete", "--force", cid)


def test_heavy_matches_packages_and_modules() -> None:
    assert heavy({"pidsafe.mount._spec", "pidsafe.mountx", "socket", "socketserver"},
                 ("pidsafe.mount", "socket")) == ["pidsafe.mount._spec", "socket"]


def test_the_installed_script_names_this_interpreter_and_imports_no_re(
        subreaper: pidsafe.Reaper, tmp_path: pathlib.Path) -> None:
    """The pidsafe-runc pip installs (setup.py's scripts=): a plain script, not a
    console script, whose wrapper imports re (and enum) for every command."""
    script = pathlib.Path(sys.executable).parent / "pidsafe-runc"
    assert script.read_text().splitlines()[0] == f"#!{sys.executable}"
    with tempfile.TemporaryFile() as err:
        with subreaper.spawn([sys.executable, "-X", "importtime", str(script), "--root",
                              str(tmp_path / "root"), "delete", "--force", "nothing"],
                             stdout=pidsafe.DEVNULL, stderr=err, stdin=pidsafe.DEVNULL) as p:
            assert p.wait(timeout=60) == 0
        err.seek(0)
        imported = {line.rsplit("|", 1)[-1].strip() for line in err.read().decode().splitlines()
                    if line.startswith("import time:")}
    assert "pidsafe.cli.runc" in imported
    assert not set(LIGHT) & imported, imported
