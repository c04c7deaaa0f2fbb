"""pidsafe-runc exec: its command line is runc's, and a failed exec leaves no
process running (root, real containers)."""

from __future__ import annotations

import json
import pathlib
import socket
from typing import Any, Iterator, List

import pytest

import pidsafe
from pidsafe.cli import runc

from conftest import children
from runc_cli import Cli, cli, subreaper  # noqa: F401 - fixtures

pytestmark = pytest.mark.root

#: Prints each of its arguments followed by "|".
ARGV = ["sh", "-c", 'printf "%s|" "$@"', "sh"]


@pytest.fixture
def running(cli: Cli, make_bundle: Any) -> Iterator[int]:
    """A running container "x" (``sleep 1000``); yields init's pid."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "x")
    yield json.loads(cli("state", "x")[1])["pid"]


def _pids(cli: Cli) -> List[int]:
    return sorted(json.loads(cli("ps", "--format", "json", "x")[1]))


# --- item 7: the command's flags are the command's ------------------------------

@pytest.mark.parametrize("flags", [["-c", "x"], ["-e", "A=1"], ["-d"], ["-t"], ["-u", "5"],
                                   ["-p", "f"], ["-g", "1"], ["--env", "B=2"], ["--detach"],
                                   ["--", "-x"], ["-h"]])
def test_the_commands_flags_are_its_own(cli: Cli, running: int, flags: List[str]) -> None:
    """`exec ID sh -c CMD`: -c (and -e, -d, -t, -u ...) were parsed as exec's own."""
    code, out, err = cli("exec", "x", *ARGV, *flags, check=False)
    assert (code, out) == (0, "".join(f"{f}|" for f in flags)), err
    assert _pids(cli) == [running]


def test_sh_dash_c_runs_its_command(cli: Cli, running: int) -> None:
    code, out, err = cli("exec", "x", "sh", "-c", "echo $0 $1", "a", "b", check=False)
    assert (code, out) == (0, "a b\n"), err


def test_exec_options_before_the_id_and_a_separator_after_it(cli: Cli, running: int) -> None:
    code, out, err = cli("exec", "--env", "A=b", "-e", "C=d", "x", "--", "sh", "-c",
                         "echo $A $C", check=False)
    assert (code, out) == (0, "b d\n"), err
    code, out, err = cli("exec", "x", "--env", "A=b", check=False)   # the command: "--env"
    assert code != 0 and "--env" in err, (code, out, err)


# --- small faults: --env, --user, --additional-gids, --cap ---------------------------

@pytest.mark.parametrize("bad", ["X", "=x", ""])
def test_env_without_a_name_and_value_is_refused(cli: Cli, running: int, bad: str) -> None:
    code, _, err = cli("exec", "--env", bad, "x", "true", check=False)
    assert code == 1 and f"--env {bad!r}: must be NAME=VALUE" in err, err
    assert _pids(cli) == [running]


@pytest.mark.parametrize("user", ["root", "root:root", "0:wheel", "-1", "1:", ":1",
                                  "4294967295", "٣"])
def test_user_must_be_numbers(cli: Cli, running: int, user: str) -> None:
    """`exec -u root` said "invalid literal for int() with base 10"."""
    code, _, err = cli("exec", "-u", user, "x", "true", check=False)
    assert code == 1 and "--user" in err and "invalid literal" not in err, err
    assert _pids(cli) == [running]


def test_user_and_group_numbers(cli: Cli, running: int) -> None:
    code, out, err = cli("exec", "-u", "65534", "x", "sh", "-c", "echo $(id -u) $(id -g)",
                         check=False)
    assert (code, out) == (0, "65534 0\n"), err   # no GID: the config's (runc's rule)
    code, out, err = cli("exec", "--user=65534:65534", "-g", "5", "--additional-gids", "7",
                         "x", "sh", "-c", "echo $(id -u) $(id -g) $(id -G)", check=False)
    assert (code, out) == (0, "65534 65534 65534 5 7\n"), err
    code, _, err = cli("exec", "-g", "x5", "x", "true", check=False)
    assert code == 1 and "--additional-gids" in err, err


def test_cap_adds_a_capability(cli: Cli, running: int) -> None:
    """--cap was accepted and ignored."""
    def caps() -> int:
        code, out, err = cli("exec", *extra, "x", "sh", "-c",
                             "grep CapEff /proc/self/status", check=False)
        assert code == 0, err
        return int(out.split()[1], 16)

    extra: List[str] = []
    without = caps()
    extra = ["--cap", "CAP_SYS_ADMIN", "-c", "net_raw"]
    with_ = caps()
    assert with_ == without | (1 << 21) | (1 << 13)
    code, _, err = cli("exec", "--cap", "CAP_FLY", "x", "true", check=False)
    assert code == 1 and "--cap 'CAP_FLY': unknown capability" in err, err


# --- item 6: a failed exec leaves nothing running ----------------------------------

@pytest.mark.parametrize("detach", [True, False])
def test_a_pid_file_that_cannot_be_written_leaves_no_process(
        cli: Cli, running: int, tmp_path: pathlib.Path, detach: bool) -> None:
    """exec --pid-file that failed exited 1 and left the process running."""
    bad = str(tmp_path / "no-such-dir" / "pid")
    kids = children()
    code, _, err = cli("exec", *(["--detach"] if detach else []), "--pid-file", bad, "x",
                       "sleep", "1000", check=False)
    assert code == 1 and f"--pid-file {bad}" in err, err
    assert _pids(cli) == [running]
    assert children() == kids   # nothing came to us either


@pytest.mark.parametrize("where", ["missing", "refusing"])
def test_a_pidfd_socket_nobody_listens_on_leaves_no_process(
        cli: Cli, running: int, tmp_path: pathlib.Path, where: str) -> None:
    """exec ignored --pidfd-socket altogether."""
    path = str(tmp_path / "pidfd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        if where == "refusing":
            s.bind(path)   # bound, never listening: ECONNREFUSED
        pid_file = tmp_path / "pid"
        code, _, err = cli("exec", "--detach", "--pid-file", str(pid_file), "--pidfd-socket",
                           path, "x", "sleep", "1000", check=False)
    assert code == 1 and f"--pidfd-socket {path}" in err, err
    assert _pids(cli) == [running] and not pid_file.exists()


def test_the_pidfd_socket_gets_the_processs_pidfd(cli: Cli, running: int,
                                                  tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "pidfd.sock")
    pid_file = tmp_path / "pid"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen(1)
        cli("exec", "--detach", "--pidfd-socket", path, "--pid-file", str(pid_file), "x",
            "sleep", "1000")
        conn, _ = s.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert msg == b"x" and len(fds) == 1
    with pidsafe.OwnedFd(fds[0]) as fd:
        with open(f"/proc/self/fdinfo/{fd.fileno()}") as f:
            info = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        assert int(info["Pid"]) == int(pid_file.read_text())


def test_the_help_says_options_end_at_the_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert runc.main(["exec", "--help"]) == 0
    out = capsys.readouterr().out
    assert "ID COMMAND [ARGS...]" in out and "--pidfd-socket" in out and "-c, --cap" in out
