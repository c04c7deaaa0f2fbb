"""exec into a running container (pidsafe/container/_exec.py), beyond Container.exec's own tests.

Container.exec's behaviour (namespaces, cgroups, users, terminals) is in
test_container.py; here, what the exec path does on its own.
"""

from __future__ import annotations

import pathlib
from subprocess import PIPE
from typing import Any

import pytest

import pidsafe

pytestmark = pytest.mark.root


def _cgroups(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def test_exec_joins_inits_cgroups_when_the_state_records_none(make_bundle: Any,
                                                              state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("exc", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        recorded, c._record.cgroup = c._record.cgroup, None   # as a state without one
        try:
            e = c.exec(["cat"], exec_id="e1", stdin=PIPE)
            try:
                assert c.pid is not None
                assert _cgroups(e.pid) == _cgroups(c.pid)
                assert e.stdin is not None
                e.stdin.close()
                assert e.wait(timeout=10) == 0
            finally:
                e.close()
        finally:
            c._record.cgroup = recorded
    finally:
        c.delete(force=True)
