"""The shim's actions import only what they use: containerd waits for ``start`` and
``delete`` on every container, and a daemon's imports delay its first request.

Each action runs in a subprocess that writes its ``sys.modules`` to a file
(the daemon: once it serves, then it is shut down).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Set

import pytest

ENTRY = ("import sys\n"
         "from pidsafe.shim._cli import main\n"
         "code = main(sys.argv[2:])\n"
         "with open(sys.argv[1], 'w') as f:\n"
         "    f.write('\\n'.join(sorted(sys.modules)))\n"
         "sys.exit(code)\n")

#: What neither action may load: the container layer, the reaper, the wire layer.
HEAVY = ("pidsafe.container", "pidsafe.reaper", "pidsafe.process", "pidsafe.mount",
         "pidsafe.shim._messages", "pidsafe.shim._codec", "pidsafe.shim._server",
         "pidsafe.shim._connection",
         "pidsafe.shim._service", "pidsafe._native", "asyncio", "ssl", "subprocess",
         "threading", "logging", "typing", "dataclasses")


def modules(tmp_path: Path, argv: List[str], cwd: Path) -> Set[str]:
    out = tmp_path / "modules"
    res = subprocess.run([sys.executable, "-c", ENTRY, str(out), *argv], cwd=cwd,
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return set(out.read_text().split())


def test_delete_loads_nothing_when_all_is_gone(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    mods = modules(tmp_path, ["-namespace", "n", "-id", "c", "-bundle", str(bundle), "delete"],
                   bundle)
    assert not [m for m in HEAVY if m in mods]
    assert "json" not in mods and "socket" not in mods


@pytest.mark.root
def test_start_leaves_the_daemons_imports_to_the_daemon(tmp_path: Path,
                                                        make_bundle: object) -> None:
    from pidsafe.shim import Client, messages as m

    from shimhelp import SUPERVISOR, end_supervisor

    bundle = make_bundle(["true"])  # type: ignore[operator]
    grpc = str(tmp_path / f"c-{os.getpid()}.sock")
    # The daemon inherits TTRPC_ADDRESS; nothing is published without a container.
    env = dict(os.environ, TTRPC_ADDRESS=str(tmp_path / "none.sock"))
    out = tmp_path / "modules"
    with subprocess.Popen([sys.executable, "-c", SUPERVISOR, sys.executable, "-c", ENTRY,
                           str(out), "-namespace", "n", "-address", grpc, "-id", "i1", "start"],
                          cwd=bundle, env=env, stdout=subprocess.PIPE, text=True) as sup:
        try:
            assert sup.stdout is not None
            code, address, err = eval(sup.stdout.readline())
            assert code == 0, err
            mods = set(out.read_text().split())
            with Client(address.decode()) as client:      # the daemon serves; end it
                client.call(m.TaskService.Connect, m.ConnectRequest(id="i1"))
                try:
                    client.call(m.TaskService.Shutdown, m.ShutdownRequest(id="i1"))
                except ConnectionError:
                    pass
            assert sup.wait(timeout=30) == 0
        finally:
            end_supervisor(sup)
    assert not [m for m in HEAVY if m in mods]


def test_the_daemon_loads_no_asyncio_logging_or_subprocess() -> None:
    """What the daemon imports before it serves and for its first Create (its
    start delays the first request; dataclasses and inspect were a third of
    its CPU)."""
    code = ("import sys\n"
            "import pidsafe.shim._daemon, pidsafe.shim._service, pidsafe.shim._binding\n"
            "from pidsafe.reaper import Reaper\n"
            "from pidsafe.shim import Publisher, Server\n"
            "r = Reaper(subreaper=True).start(); r.stop()\n"
            "import pidsafe.container, pidsafe.shim._create\n"
            "bad = [m for m in ('asyncio', 'ssl', 'logging', 'subprocess', 'ctypes',\n"
            "                   'dataclasses', 'inspect')\n"
            "       if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_installed_script_names_this_interpreter_and_imports_no_re(tmp_path: Path) -> None:
    """The script containerd runs (setup.py's scripts=, not a console script,
    whose wrapper imports re: a third of the delete action's CPU)."""
    script = Path(sys.executable).parent / "containerd-shim-pidsafe-v1"
    assert script.read_text().splitlines()[0] == f"#!{sys.executable}"
    res = subprocess.run([sys.executable, "-X", "importtime", str(script), "-namespace", "n",
                          "-id", "c", "-bundle", str(tmp_path), "delete"],
                         cwd=tmp_path, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "pidsafe.shim._cli" in imported
    assert not {"re", "enum", "functools"} & imported, imported
