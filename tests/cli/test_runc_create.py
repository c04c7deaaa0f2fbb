"""pidsafe-runc create and run: a command that exits non-zero has undone
everything it made (no state, process, cgroup or mount is left), and its
own command line (root, real containers)."""

from __future__ import annotations

import errno
import os
import pathlib
import socket
from typing import Any, Iterator, List, Tuple

import pytest

import pidsafe
from pidsafe.cli import runc

from conftest import children
from runc_cli import Cli, cli, left_behind, own_cgroup, subreaper  # noqa: F401 - fixtures

pytestmark = pytest.mark.root


@pytest.fixture
def refusing(tmp_path: pathlib.Path) -> Iterator[str]:
    """A unix socket path nobody listens on (bound, never listening: ECONNREFUSED)."""
    path = str(tmp_path / "refusing.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        yield path


def _bundle(make_bundle: Any, args: List[str]) -> Tuple[pathlib.Path, str]:
    cgroup: List[str] = []
    bundle = make_bundle(args, lambda d: cgroup.append(own_cgroup(d)))
    return bundle, cgroup[0]


@pytest.mark.parametrize("cmd", [["create"], ["run", "--detach"], ["run"]])
@pytest.mark.parametrize("flag", ["--pid-file", "--pidfd-socket"])
def test_a_pid_file_or_pidfd_socket_that_fails_leaves_nothing(
        cli: Cli, make_bundle: Any, tmp_path: pathlib.Path, cmd: List[str], flag: str) -> None:
    """create left its state, a live init and its cgroup when it could not
    write --pid-file or reach --pidfd-socket, and exited 1."""
    kids = children()
    bundle, cgroup = _bundle(make_bundle, ["sleep", "1000"])
    bad = str(tmp_path / "no-such-dir" / "x")
    code, _, err = cli(*cmd, flag, bad, "--bundle", str(bundle), "c1", check=False)
    assert code == 1 and flag in err and bad in err, err
    assert left_behind(cli.root, "c1", cgroup, kids) == []


def test_a_pidfd_socket_nobody_listens_on_leaves_nothing(cli: Cli, make_bundle: Any,
                                                         refusing: str) -> None:
    kids = children()
    bundle, cgroup = _bundle(make_bundle, ["sleep", "1000"])
    code, _, err = cli("create", "--pidfd-socket", refusing, "--bundle", str(bundle), "c2",
                       check=False)
    assert code == 1 and f"--pidfd-socket {refusing}" in err and "refused" in err, err
    assert left_behind(cli.root, "c2", cgroup, kids) == []


def test_a_pid_file_written_before_a_later_step_failed_is_removed(
        cli: Cli, make_bundle: Any, tmp_path: pathlib.Path, refusing: str) -> None:
    kids = children()
    bundle, cgroup = _bundle(make_bundle, ["sleep", "1000"])
    pid_file = tmp_path / "init.pid"
    code, _, err = cli("create", "--pid-file", str(pid_file), "--pidfd-socket", refusing,
                       "--bundle", str(bundle), "c3", check=False)
    assert code == 1 and "--pidfd-socket" in err, err
    assert left_behind(cli.root, "c3", cgroup, kids) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("init.pid")] == []


@pytest.mark.parametrize("detach", [True, False])
def test_run_whose_start_fails_leaves_nothing(cli: Cli, make_bundle: Any,
                                              detach: bool) -> None:
    """run created the container, start failed (no such program): the
    container stayed, stopped, in the state directory."""
    kids = children()
    bundle, cgroup = _bundle(make_bundle, ["/no/such/program"])
    code, _, err = cli("run", *(["--detach"] if detach else []), "--bundle", str(bundle), "r1",
                       check=False)
    assert code == 1 and "/no/such/program" in err, err
    assert left_behind(cli.root, "r1", cgroup, kids) == []


def test_the_pidfd_socket_gets_inits_pidfd(cli: Cli, make_bundle: Any,
                                           tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "pidfd.sock")
    pid_file = tmp_path / "init.pid"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen(1)
        cli("create", "--pidfd-socket", path, "--pid-file", str(pid_file), "--bundle",
            str(make_bundle(["sleep", "1000"])), "p1")
        conn, _ = s.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert msg == b"p1" and len(fds) == 1
    try:
        with open(f"/proc/self/fdinfo/{fds[0]}") as f:
            info = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        assert int(info["Pid"]) == int(pid_file.read_text())
    finally:
        os.close(fds[0])


def test_double_dash_before_the_id(cli: Cli, make_bundle: Any) -> None:
    """`create --bundle B -- ID` was refused: "expected exactly one container id, got 0"."""
    cli("create", "--bundle", str(make_bundle(["sleep", "1000"])), "--", "d1")
    assert pidsafe.Container.list(str(cli.root)) == ["d1"]
    code, out, err = cli("run", "--bundle", str(make_bundle(["sh", "-c", "echo ran"])), "--",
                         "d2", check=False)
    assert (code, out) == (0, "ran\n"), err


# --- every step after the container exists, failed in turn (in-process) ------------

def _in_process(faults: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Count (and fail) only the CLI's own steps: Container.create runs unarmed
    (tests/container/test_container_faults.py sweeps it)."""
    real = pidsafe.Container.create.__func__   # type: ignore[attr-defined]

    def create(cls: Any, *args: Any, **kwargs: Any) -> Any:
        with faults.paused():
            return real(cls, *args, **kwargs)

    monkeypatch.setattr(pidsafe.Container, "create", classmethod(create))


@pytest.mark.parametrize("cmd", [["create"], ["run", "--detach"]])
def test_every_failing_step_after_create_leaves_nothing(
        make_bundle: Any, tmp_path: pathlib.Path, faults: Any,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cmd: List[str]) -> None:
    """In this process: init is our child, and the sweep sees every call the
    command makes once the container exists (pid file, start, undo)."""
    from conftest import leak_check

    _in_process(faults, monkeypatch)
    kids = children()
    bundle, cgroup = _bundle(make_bundle, ["sleep", "1000"])
    pid_file = tmp_path / "pid"
    root = tmp_path / "root"

    def op() -> int:
        return runc.main(["--root", str(root), *cmd, "--pid-file", str(pid_file), "--bundle",
                          str(bundle), "f1"])

    def clean() -> None:
        assert runc.main(["--root", str(root), "delete", "--force", "f1"]) == 0
        pid_file.unlink()

    n = faults.count(lambda: op() == 0 or pytest.fail("op failed unarmed"))
    clean()
    assert n >= 3   # at least the pid file's open, write and rename
    for k in range(1, n + 1):
        with leak_check(f"k={k}"):
            with faults.fail_at(k, errno.EIO):
                code = op()
            assert faults.fired is not None, k
            err = capsys.readouterr().err
            if code == 0 and faults.fired.endswith("os.mkdir"):
                # os.makedirs of the state directory, which exists: it ignores
                # mkdir's error once the directory is there.  Nothing failed.
                clean()
                continue
            assert code == 1 and os.strerror(errno.EIO) in err, (k, faults.fired, err)
            assert left_behind(root, "f1", cgroup, kids) == [], (k, faults.fired)
            assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pid")] == []


@pytest.mark.parametrize("cmd", [["create"], ["run", "--detach"]])
def test_an_interrupt_at_any_step_after_create_leaves_nothing(
        make_bundle: Any, tmp_path: pathlib.Path, faults: Any,
        monkeypatch: pytest.MonkeyPatch, cmd: List[str]) -> None:
    """Ctrl-C (a signal handler raising) right before or after each call."""
    from conftest import leak_check
    from faults import Interrupt

    _in_process(faults, monkeypatch)
    kids = children()
    bundle, cgroup = _bundle(make_bundle, ["sleep", "1000"])
    pid_file = tmp_path / "pid"
    root = tmp_path / "root"
    argv = ["--root", str(root), *cmd, "--pid-file", str(pid_file), "--bundle", str(bundle),
            "i1"]
    def clean() -> None:
        assert runc.main(["--root", str(root), "delete", "--force", "i1"]) == 0
        pid_file.unlink()

    n = faults.count(lambda: runc.main(argv) == 0 or pytest.fail("op failed unarmed"))
    clean()
    for k in range(1, n + 1):
        for before in (True, False):
            with leak_check(f"k={k}"):
                with faults.interrupt_at(k, before=before):
                    try:
                        code = runc.main(argv)
                    except Interrupt:
                        code = None
                if code is not None:
                    # Only "after" a call that raised (makedirs' mkdir of the
                    # existing state directory): the harness interrupts nothing.
                    assert (code, before) == (0, False), (k, faults.fired)
                    clean()
                    continue
                assert left_behind(root, "i1", cgroup, kids) == [], (k, faults.fired)
                assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pid")] == []
