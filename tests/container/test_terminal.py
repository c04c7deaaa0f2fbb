"""process.terminal: the pty comes from the container's devpts, its master over a socket (root)."""

from __future__ import annotations

import errno
import os
import pathlib
import socket
import stat
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import pidsafe
from conftest import open_fds

pytestmark = pytest.mark.root

#: Prints, one per line: what it read, its tty, the window size, tty_nr, the
#: owner of its stdin, /dev/console's device, its open fds.
REPORT = ("read line; echo got:$line; tty; stty size; cut -d' ' -f7 /proc/self/stat; "
          "stat -c %u /proc/self/fd/0; stat -c %t:%T /dev/console; ls /proc/self/fd | "
          "tr '\\n' ' '; echo; exit 3")
MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def terminal_config(size: Tuple[int, int] = (33, 101), userns: bool = False,
                    uid: int = 0) -> Any:
    def edit(doc: Dict[str, Any]) -> None:
        doc["process"]["terminal"] = True
        doc["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
        doc["process"]["user"]["uid"] = uid
        if userns:
            doc["linux"]["namespaces"].append({"type": "user"})
            doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = MAP
    return edit


def read_all(term: pidsafe.Terminal) -> str:
    out = b""
    while True:
        data = term.read()
        if not data:
            return out.decode().replace("\r\n", "\n")
        out += data


def report_lines(text: str) -> List[str]:
    """The report's lines from 'got:' on (the terminal echoes what was typed first)."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("got:")):]


def tty_nr(major: int, minor: int) -> int:
    """/proc/PID/stat's encoding of a device number (fs/proc/array.c)."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


@pytest.mark.parametrize("userns, uid", [(False, 0), (False, 1000), (True, 0), (True, 1000)],
                         ids=["host", "host-user", "userns", "userns-user"])
def test_create_gives_the_process_a_terminal(make_bundle: Any, state_dir: pathlib.Path,
                                             pair: Tuple[socket.socket, socket.socket],
                                             userns: bool, uid: int) -> None:
    a, b = pair
    bundle = make_bundle(["sh", "-c", REPORT], terminal_config((33, 101), userns, uid))
    before = open_fds()
    c = pidsafe.Container.create("t", bundle, state_dir=str(state_dir), console_socket=a)
    try:
        # The master went from init straight to the socket: nothing new here
        # but the handle's own fds (init's pidfd, its status pipe).
        new = {fd: what for fd, what in open_fds().items() if before.get(fd) != what}
        assert sorted(v.split(":")[0] for v in new.values()) == ["anon_inode", "pipe"], new
        with pidsafe.receive_terminal(b) as term:
            assert term.size() == (33, 101)
            # The peer, as the host sees it: owned by the process's user
            # (mapped to the host through the user namespace).
            peer = os.stat(f"/proc/{c.pid}/root/dev/pts/0")
            assert stat.S_ISCHR(peer.st_mode) and os.major(peer.st_rdev) == 136
            assert peer.st_uid == uid + (100000 if userns else 0)
            c.start()
            term.write(b"hello\n")
            lines = report_lines(read_all(term))
        assert c.wait(timeout=10) == 3
    finally:
        c.delete(force=True)
    assert lines == ["got:hello", "/dev/pts/0", "33 101", str(tty_nr(136, 0)), str(uid),
                     "88:0", "0 1 2 3 "]


def test_a_console_socket_path_gets_runcs_message(make_bundle: Any, state_dir: pathlib.Path,
                                                  tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "console.sock")
    bundle = make_bundle(["sh", "-c", "tty; exit 4"], terminal_config((24, 80)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        c = pidsafe.Container.create("p", bundle, state_dir=str(state_dir),
                                     console_socket=path)
        try:
            conn, _ = listener.accept()
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 4096, 2)
            with pidsafe.Terminal(fds[0], "master") as term:
                assert (msg, len(fds)) == (b"/dev/ptmx", 1)
                assert term.size() == (24, 80)
                c.start()
                assert read_all(term) == "/dev/pts/0\n"
            assert c.wait(timeout=10) == 4
        finally:
            c.delete(force=True)


@pytest.mark.parametrize("userns", [False, True], ids=["host", "userns"])
def test_exec_with_a_terminal(make_bundle: Any, state_dir: pathlib.Path,
                              pair: Tuple[socket.socket, socket.socket], userns: bool) -> None:
    def edit(doc: Dict[str, Any]) -> None:
        if userns:
            doc["linux"]["namespaces"].append({"type": "user"})
            doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = MAP

    a, b = pair
    c = pidsafe.Container.create("e", make_bundle(["sleep", "1000"], edit),
                                 state_dir=str(state_dir))
    try:
        c.start()
        before = open_fds()
        proc = c.exec(["sh", "-c", "read line; echo got:$line; tty; stty size; "
                       "cut -d' ' -f7 /proc/self/stat; stat -c %u /proc/self/fd/0; exit 6"],
                      exec_id="tty", terminal=True, console_size=(20, 70), console_socket=a)
        with proc:
            new = {fd: what for fd, what in open_fds().items() if before.get(fd) != what}
            assert new == {proc.fileno(): "anon_inode:[pidfd]"}   # no master, no socket
            with pidsafe.receive_terminal(b) as term:
                term.write(b"hi\n")
                lines = report_lines(read_all(term))
            assert proc.wait(timeout=10) == 6
        assert lines == ["got:hi", "/dev/pts/0", "20 70", str(tty_nr(136, 0)), "0"]
    finally:
        c.delete(force=True)


def test_terminal_and_console_socket_must_agree(make_bundle: Any, state_dir: pathlib.Path,
                                                pair: Tuple[socket.socket, socket.socket]
                                                ) -> None:
    a, _ = pair
    with pytest.raises(pidsafe.ConfigError, match="console socket") as info:
        pidsafe.Container.create("x", make_bundle(["true"], terminal_config()),
                                 state_dir=str(state_dir))
    assert info.value.json_path == "process.terminal"
    with pytest.raises(pidsafe.ConfigError, match="only for a terminal"):
        pidsafe.Container.create("x", make_bundle(["true"]), state_dir=str(state_dir),
                                 console_socket=a)
    with pytest.raises(ValueError, match="stdin, stdout and stderr"):
        pidsafe.Container.create("x", make_bundle(["true"], terminal_config()),
                                 state_dir=str(state_dir), console_socket=a,
                                 stdout=pidsafe.PIPE)
    with pytest.raises(ValueError, match="AF_UNIX stream"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            pidsafe.Container.create("x", make_bundle(["true"], terminal_config()),
                                     state_dir=str(state_dir), console_socket=s)


def test_a_bad_console_socket_path_fails_before_anything_exists(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    bundle = make_bundle(["true"], terminal_config())
    missing = str(tmp_path / "missing.sock")
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir), console_socket=missing)
    assert info.value.filename == missing and "console socket" in str(info.value)
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OSError) as info2:
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir),
                                 console_socket=str(plain))
    assert info2.value.errno == errno.ENOTSOCK and info2.value.filename == str(plain)
    dead = str(tmp_path / "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(dead)   # bound, never listening: refused
    with pytest.raises(ConnectionRefusedError):
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir), console_socket=dead)
    assert os.listdir(state_dir) == []


def test_a_long_console_socket_path_is_reached_through_its_directory(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    path = str(deep / "console.sock")
    assert len(path) > 108   # more than sockaddr_un.sun_path holds
    bundle = make_bundle(["true"], terminal_config())
    d = os.open(deep, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(f"/proc/self/fd/{d}/console.sock")
            listener.listen(1)
            c = pidsafe.Container.create("l", bundle, state_dir=str(state_dir),
                                         console_socket=path)
            try:
                conn, _ = listener.accept()
                with conn, pidsafe.receive_terminal(conn) as term:
                    c.start()
                    assert read_all(term) == ""
                assert c.wait(timeout=10) == 0
            finally:
                c.delete(force=True)
    finally:
        os.close(d)


def test_the_send_failing_fails_create_and_leaves_nothing(
        make_bundle: Any, state_dir: pathlib.Path,
        pair: Tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()   # nobody will receive: init's sendmsg gets EPIPE
    with pytest.raises(pidsafe.ContainerError) as info:
        pidsafe.Container.create("s", make_bundle(["true"], terminal_config()),
                                 state_dir=str(state_dir), console_socket=a)
    assert info.value.errno == errno.EPIPE and info.value.field == "process.terminal"
    assert "send the terminal to the console socket" in str(info.value)


def test_no_devpts_in_the_container_names_the_field(make_bundle: Any, state_dir: pathlib.Path,
                                                    pair: Tuple[socket.socket, socket.socket]
                                                    ) -> None:
    def no_devpts(doc: Dict[str, Any]) -> None:
        terminal_config()(doc)
        doc["mounts"] = [m for m in doc["mounts"] if m["type"] != "devpts"]

    a, b = pair
    with pytest.raises(pidsafe.ContainerError) as info:
        pidsafe.Container.create("d", make_bundle(["true"], no_devpts),
                                 state_dir=str(state_dir), console_socket=a)
    assert info.value.errno == errno.ENOENT and info.value.field == "process.terminal"
    assert "/dev/pts/ptmx" in str(info.value)
    b.setblocking(False)
    with pytest.raises(BlockingIOError):   # nothing was sent
        b.recv(1)


def test_receive_terminal_refuses_what_is_not_a_master(
        pair: Tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(b"x")
    with pytest.raises(OSError) as info:
        pidsafe.receive_terminal(b)
    assert info.value.errno == errno.EPROTO
    with open(os.devnull, "rb") as f:
        socket.send_fds(a, [b"/dev/ptmx"], [f.fileno()])
    with pytest.raises(OSError, match="not a pty master") as info:
        pidsafe.receive_terminal(b)
    a.close()
    with pytest.raises(EOFError):
        pidsafe.receive_terminal(b)


def test_a_terminal_without_a_mount_namespace_binds_no_console(
        make_bundle: Any, state_dir: pathlib.Path,
        pair: Tuple[socket.socket, socket.socket]) -> None:
    def shared(doc: Dict[str, Any]) -> None:
        terminal_config((10, 40))(doc)
        doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"]
                                      if ns["type"] != "mount"]
        doc["root"]["readonly"] = False

    a, b = pair
    bundle = make_bundle(["sh", "-c", "tty; stty size; [ -c /dev/console ] || echo no-console"],
                         shared)
    c = pidsafe.Container.create("n", bundle, state_dir=str(state_dir), console_socket=a)
    try:
        with pidsafe.receive_terminal(b) as term:
            c.start()
            assert read_all(term) == "/dev/pts/0\n10 40\nno-console\n"
        assert c.wait(timeout=10) == 0
    finally:
        c.delete(force=True)
