"""A terminal create under fault injection: every call failed or interrupted (root).

The calls the terminal adds (the console socket, passing it to init,
receiving the master) must leave no fd, child, mount or state behind, and
never a master open in this process.
"""

from __future__ import annotations

import errno
import os
import pathlib
import socket
from typing import Any, List

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults, Interrupt

pytestmark = pytest.mark.root


def _sweep(faults: Faults, make_bundle: Any, state_dir: pathlib.Path,
           tmp_path: pathlib.Path, interrupt: bool) -> None:
    def tty(doc: Any) -> None:
        doc["process"]["terminal"] = True

    bundle = make_bundle(["true"], tty)
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    made: List[pidsafe.Container] = []

    def create() -> None:
        # A path, as containerd's shim gives it: we connect; init sends.
        made.append(pidsafe.Container.create("t", bundle, state_dir=str(state_dir),
                                             console_socket=path))

    def drain() -> None:
        """Accept what init connected; a master it sent is received and closed."""
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            with conn:
                try:
                    pidsafe.receive_terminal(conn).close()
                except EOFError:
                    pass   # connected, then init failed (or never ran) before sending

    try:
        n = faults.count(create)
        made.pop().delete(force=True)
        drain()
        calls = list(faults.calls)
        assert any("socket" in c for c in calls) or n > 20, calls
        for k in range(1, n + 1):
            with leak_check(f"terminal create with call {k} of {n} ({calls[k - 1]}) "
                            f"{'interrupted' if interrupt else 'failed'}"):
                ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
                try:
                    with ctx:
                        create()
                except Interrupt:
                    assert interrupt
                except (OSError, pidsafe.Error) as exc:
                    assert not interrupt, f"call {k} ({faults.fired}): {exc!r}"
                while made:
                    made.pop().delete(force=True)
                drain()
                left = sorted(os.listdir(state_dir))
                if left == ["t.lock"]:
                    st = pidsafe.StateFile(str(state_dir), "t")
                    assert st.lock(blocking=False), f"call {k}: lock still held"
                    st.destroy()
                    st.unlock()
                    left = sorted(os.listdir(state_dir))
                assert left == [], f"call {k} ({faults.fired}) left {left}"
    finally:
        listener.close()


def test_terminal_create_with_each_call_failing(faults: Faults, make_bundle: Any,
                                                state_dir: pathlib.Path,
                                                tmp_path: pathlib.Path) -> None:
    _sweep(faults, make_bundle, state_dir, tmp_path, interrupt=False)


def test_terminal_create_with_each_call_interrupted(faults: Faults, make_bundle: Any,
                                                    state_dir: pathlib.Path,
                                                    tmp_path: pathlib.Path) -> None:
    _sweep(faults, make_bundle, state_dir, tmp_path, interrupt=True)


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_receive_terminal_with_each_call_failing(faults: Faults, interrupt: bool) -> None:
    master, peer = os.openpty()
    try:
        def op(b: socket.socket) -> None:
            pidsafe.receive_terminal(b).close()

        def sent() -> socket.socket:
            a, b = socket.socketpair()
            with a:
                socket.send_fds(a, [b"/dev/ptmx"], [master])
            return b

        with sent() as b:
            n = faults.count(lambda: op(b))
        assert n >= 2, faults.calls   # recvmsg, the TIOCGPTN check
        for k in range(1, n + 1):
            with sent() as b, leak_check(f"receive with call {k} of {n}", check_mounts=False):
                ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
                with pytest.raises(Interrupt if interrupt else OSError):
                    with ctx:
                        op(b)
    finally:
        os.close(master)
        os.close(peer)
