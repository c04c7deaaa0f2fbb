"""pidsafe-runc with terminals, as containerd's shim drives it (root, real containers).

The shim listens on a console socket, runs ``create --bundle B --pid-file F
--console-socket S ID`` (or ``exec --process P.json --detach --pid-file F
--console-socket S ID``), then accepts and receives the master.
"""

from __future__ import annotations

import json
import pathlib
import socket
from typing import Any, Dict, Iterator

import pytest

import pidsafe
from runc_cli import Cli, cli, subreaper  # noqa: F401 - fixtures

pytestmark = pytest.mark.root


def with_terminal(doc: Dict[str, Any]) -> None:
    doc["process"]["terminal"] = True
    doc["process"]["consoleSize"] = {"height": 30, "width": 90}


@pytest.fixture
def console(tmp_path: pathlib.Path) -> Iterator[socket.socket]:
    """A listening console socket, at ``console.path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(tmp_path / "pty.sock"))
        s.listen(4)
        yield s


def receive(listener: socket.socket) -> pidsafe.Terminal:
    conn, _ = listener.accept()
    with conn:
        return pidsafe.receive_terminal(conn)


def read_all(term: pidsafe.Terminal) -> str:
    out = b""
    while True:
        data = term.read()
        if not data:
            return out.decode().replace("\r\n", "\n")
        out += data


def test_create_with_a_console_socket(cli: Cli, make_bundle: Any, console: socket.socket,
                                      tmp_path: pathlib.Path) -> None:
    bundle = make_bundle(["sh", "-c", "read x; echo got:$x; tty; stty size"], with_terminal)
    pid_file = tmp_path / "init.pid"
    cli("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "--console-socket",
        console.getsockname(), "t1")
    with receive(console) as term:
        assert json.loads(cli("state", "t1")[1])["status"] == "created"
        cli("start", "t1")
        term.write(b"typed\n")
        out = read_all(term)
    assert out.split("got:", 1)[1].splitlines() == ["typed", "/dev/pts/0", "30 90"]
    cli("delete", "--force", "t1")


def test_exec_tty_and_process_json_with_a_console_socket(
        cli: Cli, make_bundle: Any, console: socket.socket, tmp_path: pathlib.Path) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "e1")
    cli("exec", "--tty", "--detach", "--console-socket", console.getsockname(), "e1", "--",
        "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys")
    with receive(console) as term:
        assert read_all(term) == "/dev/pts/0\nall-ttys\n"
    process = {"terminal": True, "consoleSize": {"height": 12, "width": 34},
               "args": ["sh", "-c", "tty; stty size; cut -d' ' -f7 /proc/self/stat"],
               "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    (tmp_path / "p.json").write_text(json.dumps(process))
    pid_file = tmp_path / "exec.pid"
    cli("exec", "--process", str(tmp_path / "p.json"), "--detach", "--pid-file",
        str(pid_file), "--console-socket", console.getsockname(), "e1")
    with receive(console) as term:
        assert read_all(term) == f"/dev/pts/0\n12 34\n{136 << 8}\n"
    assert int(pid_file.read_text()) > 0
    cli("delete", "--force", "e1")


def test_run_in_the_foreground_relays_the_terminal(cli: Cli, make_bundle: Any) -> None:
    bundle = make_bundle(["sh", "-c", "tty; stty size; exit 4"], with_terminal)
    code, out, err = cli("run", "--bundle", str(bundle), "f1", check=False)
    assert (code, out.replace("\r\n", "\n"), err) == (4, "/dev/pts/0\n30 90\n", "")
    assert cli("list", "-q")[1] == ""


def test_exec_tty_in_the_foreground_relays_the_terminal(cli: Cli, make_bundle: Any) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "f2")
    code, out, err = cli("exec", "--tty", "f2", "--", "sh", "-c", "tty; exit 5", check=False)
    assert (code, out.replace("\r\n", "\n"), err) == (5, "/dev/pts/0\n", "")
    cli("delete", "--force", "f2")


def test_runcs_console_rules(cli: Cli, make_bundle: Any, console: socket.socket,
                             tmp_path: pathlib.Path) -> None:
    tty = make_bundle(["true"], with_terminal)
    plain = make_bundle(["sleep", "1000"])
    sock = console.getsockname()
    for args, message in [
            (("create", "--bundle", str(tty), "x"), "process.terminal: needs a console socket"),
            (("run", "-d", "--bundle", str(tty), "x"), "process.terminal: needs a console"),
            (("create", "--bundle", str(plain), "--console-socket", sock, "x"),
             "only for a terminal"),
            (("run", "--bundle", str(tty), "--console-socket", sock, "x"), "will not detach"),
            (("create", "--bundle", str(tty), "--console-socket", str(tmp_path / "nope"), "x"),
             f"connect to the console socket: No such file or directory: "
             f"'{tmp_path / 'nope'}'")]:
        code, _, err = cli(*args, check=False)
        assert code == 1 and message in err, (args, err)
        assert cli("list", "-q")[1] == ""
    cli("run", "-d", "--bundle", str(plain), "r")
    for args, message in [
            (("exec", "--tty", "--detach", "r", "true"), "needs a console socket"),
            (("exec", "--tty", "--console-socket", sock, "r", "true"), "will not detach"),
            (("exec", "--detach", "--console-socket", sock, "r", "true"),
             "only for a terminal")]:
        code, _, err = cli(*args, check=False)
        assert code == 1 and message in err, (args, err)
    cli("delete", "--force", "r")


def test_run_from_a_terminal_goes_raw_and_copies_the_window_size(
        subreaper: pidsafe.Reaper, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    import fcntl
    import os
    import struct
    import sys
    import termios

    from runc_cli import ENTRY

    bundle = make_bundle(["sh", "-c", "stty size; read x; echo got:$x; exit 2"],
                         lambda d: d["process"].update(terminal=True))
    master, peer = os.openpty()
    with pidsafe.Terminal(master, "our terminal") as ours:
        try:
            fcntl.ioctl(peer, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            proc = subreaper.spawn([sys.executable, "-c", ENTRY, "--root", str(tmp_path / "r"),
                                    "run", "--bundle", str(bundle), "w1"],
                                   stdin=peer, stdout=peer, stderr=peer)
        finally:
            os.close(peer)
        with proc:
            out = b""
            while b"40 120" not in out:   # the relay runs: our terminal is raw now
                out += ours.read()
            assert not termios.tcgetattr(master)[3] & termios.ECHO
            ours.write(b"abc\r")
            while True:
                data = ours.read()
                if not data:
                    break
                out += data
            assert proc.wait(timeout=60) == 2
    assert b"got:abc" in out and b"Traceback" not in out
