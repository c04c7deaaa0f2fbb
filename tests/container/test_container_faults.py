"""Container.create under fault injection: every native/os call failed or interrupted."""

from __future__ import annotations

import errno
import os
import pathlib
from typing import Any

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults, Interrupt

pytestmark = pytest.mark.root


def _sweep(faults: Faults, make_bundle: Any, state_dir: pathlib.Path, interrupt: bool,
           edit: Any = lambda doc: None) -> None:
    bundle = make_bundle(["true"], edit)

    def create() -> pidsafe.Container:
        # Pipes for stdio: a failure must close our ends too.
        return pidsafe.Container.create("f", bundle, state_dir=str(state_dir),
                                        stdout=pidsafe.PIPE, stderr=pidsafe.PIPE)

    made = []
    n = faults.count(lambda: made.append(create()))
    made.pop().delete(force=True)
    calls = list(faults.calls)
    assert n > 20, calls
    for k in range(1, n + 1):
        with leak_check(f"create with call {k} of {n} ({calls[k - 1]}) "
                        f"{'interrupted' if interrupt else 'failed'}"):
            c = None
            ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
            try:
                with ctx:
                    c = create()
            except Interrupt:
                assert interrupt
            except (OSError, pidsafe.Error) as exc:
                assert not interrupt, f"call {k} ({faults.fired}): {exc!r}"
            if c is not None:
                c.delete(force=True)
            left = sorted(os.listdir(state_dir))
            if left == ["f.lock"]:
                # A lock() that failed before it held the lock leaves the
                # (empty) lock file: never a state, never a held lock.
                st = pidsafe.StateFile(str(state_dir), "f")
                assert st.lock(blocking=False), f"call {k} ({faults.fired}): lock still held"
                st.destroy()
                st.unlock()
                left = sorted(os.listdir(state_dir))
            assert left == [], f"call {k} ({faults.fired}) left {left}"


def test_create_with_each_call_failing(faults: Faults, make_bundle: Any,
                                       state_dir: pathlib.Path) -> None:
    _sweep(faults, make_bundle, state_dir, interrupt=False)


def test_create_with_each_call_interrupted(faults: Faults, make_bundle: Any,
                                           state_dir: pathlib.Path) -> None:
    _sweep(faults, make_bundle, state_dir, interrupt=True)


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_create_joining_a_pid_namespace_with_each_call(faults: Faults, make_bundle: Any,
                                                      state_dir: pathlib.Path,
                                                      tmp_path: pathlib.Path,
                                                      interrupt: bool) -> None:
    """The namespace file opened and checked, our thread in and out of it."""
    holder_state = tmp_path / "holder-state"
    holder = pidsafe.Container.create("holder", make_bundle(["sleep", "1000"]),
                                      state_dir=str(holder_state))
    try:
        holder.start()

        def edit(doc: Any) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "pid":
                    ns["path"] = f"/proc/{holder.pid}/ns/pid"

        own = os.readlink("/proc/thread-self/ns/pid_for_children")
        _sweep(faults, make_bundle, state_dir, interrupt, edit)
        assert os.readlink("/proc/thread-self/ns/pid_for_children") == own
    finally:
        holder.delete(force=True)
    assert pidsafe.Container.list(str(holder_state)) == []


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_create_without_a_mount_namespace_with_each_call(faults: Faults, make_bundle: Any,
                                                        state_dir: pathlib.Path,
                                                        interrupt: bool) -> None:
    """init mounts in our namespace: every failure leaves none of them (the
    leak check compares our mounts)."""
    def edit(doc: Any) -> None:
        doc["linux"]["namespaces"] = []
        doc.pop("hostname", None)
        doc["root"]["readonly"] = False

    _sweep(faults, make_bundle, state_dir, interrupt, edit)
