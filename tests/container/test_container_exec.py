"""Execs (pidsafe/container/_container_exec.py): a container handle's exec ids.

The container's own exec tests (namespaces, cgroups, users, terminals) are
in test_container.py; here, the registry on its own, and that the
container owns it (no mixin in ``help(Container)``).
"""

from __future__ import annotations

import pydoc
from typing import Any, List

import pytest

import pidsafe
from pidsafe.container._container_exec import Execs
from pidsafe.container.config import parse_process
from pidsafe.container.config._reader import JsonObject

PROCESS = parse_process(JsonObject({"args": ["true"], "cwd": "/"}, "process"))


def _start(execs: Execs, exec_id: str, ready: Any) -> Any:
    return execs.start(exec_id, PROCESS, ready=ready, spec=lambda: None, cgroup=None,
                       reaper=None, stdio=(None, None, None), on_started=None,
                       preserve_fds=0, console_socket=None)


def test_an_id_is_reserved_while_its_exec_starts() -> None:
    execs = Execs("c1")
    seen: List[str] = []

    def ready() -> Any:
        with pytest.raises(pidsafe.ContainerStateError, match="'e1' is already in use"):
            _start(execs, "e1", ready)
        seen.append("checked")
        raise pidsafe.ContainerStateError("container 'c1' is not running")

    with pytest.raises(pidsafe.ContainerStateError, match="not running"):
        _start(execs, "e1", ready)
    assert seen == ["checked"]


def test_an_exec_that_fails_frees_its_id() -> None:
    execs = Execs("c1")
    for _ in range(2):   # the second is refused for the same reason, not as a duplicate
        with pytest.raises(pidsafe.ContainerStateError, match="not running"):
            _start(execs, "e1", lambda: (_ for _ in ()).throw(
                pidsafe.ContainerStateError("container 'c1' is not running")))


def test_a_bad_env_is_refused_before_the_id_is_taken() -> None:
    execs = Execs("c1")
    bad = PROCESS.replace(env=("NOEQUALS",))
    with pytest.raises(pidsafe.ConfigError, match=r"process\.env\[0\]"):
        execs.start("e1", bad, ready=lambda: None, spec=lambda: None, cgroup=None,
                    reaper=None, stdio=(None, None, None), on_started=None, preserve_fds=0,
                    console_socket=None)
    with pytest.raises(pidsafe.ContainerStateError, match="not running"):
        _start(execs, "e1", lambda: (_ for _ in ()).throw(
            pidsafe.ContainerStateError("container 'c1' is not running")))


def test_the_container_owns_its_execs_and_cgroup_operations() -> None:
    assert pidsafe.Container.__bases__ == (object,)
    for name in ("exec", "exec_process", "pids", "pause", "resume", "update", "start",
                 "delete", "kill", "state", "status"):
        assert name in vars(pidsafe.Container) and getattr(pidsafe.Container, name).__doc__
    text = pydoc.render_doc(pidsafe.Container, renderer=pydoc.plaintext)
    assert "Mixin" not in text and "NotImplementedError" not in text
    assert "Methods inherited" not in text
