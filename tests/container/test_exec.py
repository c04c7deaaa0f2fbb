"""exec into a running container (pidsafe/container/_exec.py), beyond Container.exec's own tests.

Container.exec's behaviour (namespaces, cgroups, users, terminals) is in
test_container.py; here, what the exec path does on its own.
"""

from __future__ import annotations

import errno
import os
import pathlib
from subprocess import PIPE
from typing import Any, List, Tuple

import pytest

import pidsafe
from pidsafe import OwnedFd

pytestmark = pytest.mark.root


def _cgroups(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def test_exec_joins_inits_cgroups_when_the_state_records_none(make_bundle: Any,
                                                              state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("exc", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        record = c._recorded.record
        recorded, record.cgroup = record.cgroup, None   # as a state without one
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
            record.cgroup = recorded
    finally:
        c.delete(force=True)


def test_exec_that_cannot_join_the_cgroup_fails_with_the_field_and_leaves_nothing(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The exec's process joins the container's cgroups itself
    # (OP_CGROUP_JOIN), before it execs: a cgroup gone meanwhile (here: a
    # tasks file whose cgroup was removed after it was opened) fails the
    # exec before its program ran.
    from pidsafe.container.cgroup._cgroup import Cgroup

    c = pidsafe.Container.create("exg", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        gone = f"/sys/fs/cgroup/pids/pidsafe-test-gone-{os.getpid()}"
        os.mkdir(gone)
        try:
            fd = os.open(f"{gone}/tasks", os.O_WRONLY | os.O_CLOEXEC)
        finally:
            os.rmdir(gone)
        opened: List[int] = []

        def open_join_fds(self: Cgroup) -> List[Tuple[OwnedFd, str]]:
            opened.append(fd)
            return [(OwnedFd(fd, "test tasks file"), f"{gone}/tasks")]

        monkeypatch.setattr(Cgroup, "open_join_fds", open_join_fds)
        with pytest.raises(pidsafe.ContainerError) as ei:
            c.exec(["true"], exec_id="e1")
        assert opened == [fd]
        assert ei.value.errno == errno.ENODEV
        assert ei.value.field == "linux.cgroupsPath"
        assert "join the cgroup" in str(ei.value)
        assert c.pids() == [c.pid]              # nothing of the exec is left in there
    finally:
        c.delete(force=True)
