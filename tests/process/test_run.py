"""pidsafe.run(): subprocess.run's semantics, side by side with it, and no child left behind."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
from typing import Any, Dict, List

import pytest

import pidsafe
from pidsafe import errors

from conftest import Boom, assert_nothing_left, children, leak_check, open_fds, state
from faults import Faults, Interrupt

PIPE = subprocess.PIPE
PY = sys.executable

#: Arguments both run()s take, and what they must agree on.
SAME = [
    (["true"], {}),
    (["sh", "-c", "exit 3"], {}),
    (["sh", "-c", "echo out; echo err >&2; exit 2"], {"capture_output": True}),
    (["sh", "-c", "echo out; echo err >&2"], {"stdout": PIPE}),
    (["sh", "-c", "echo out; echo err >&2"], {"stdout": PIPE, "stderr": subprocess.STDOUT}),
    (["cat"], {"input": b"in\n", "stdout": PIPE}),
    (["cat"], {"input": b"", "capture_output": True}),
    (["cat"], {"input": "a\r\nb\rc\n", "capture_output": True, "text": True}),
    (["cat"], {"input": "é\n", "capture_output": True, "encoding": "latin-1"}),
    (["cat"], {"input": "x", "capture_output": True, "universal_newlines": True}),
    (["sh", "-c", "printf '\\377'"], {"capture_output": True, "text": True,
                                      "errors": "replace"}),
    (["sh", "-c", "kill -TERM $$"], {"capture_output": True}),
    (["cat"], {"stdin": subprocess.DEVNULL, "capture_output": True}),
]


@pytest.mark.parametrize("args, kw", SAME, ids=[f"{a[-1][:20]}-{sorted(k)}" for a, k in SAME])
def test_like_subprocess_run(args: List[str], kw: Dict[str, Any]) -> None:
    want = subprocess.run(args, **kw)
    got = pidsafe.run(args, **kw)
    assert isinstance(got, subprocess.CompletedProcess)
    assert (got.args, got.returncode, got.stdout, got.stderr) == (
        want.args, want.returncode, want.stdout, want.stderr)
    assert repr(got) == repr(want)


def test_check_raises_a_called_process_error_of_both_kinds() -> None:
    with pytest.raises(pidsafe.CalledProcessError) as info:
        pidsafe.run(["sh", "-c", "echo o; echo e >&2; exit 4"], capture_output=True, check=True)
    exc = info.value
    assert isinstance(exc, subprocess.CalledProcessError) and isinstance(exc, pidsafe.Error)
    assert (exc.returncode, exc.cmd, exc.output, exc.stdout, exc.stderr) == (
        4, ["sh", "-c", "echo o; echo e >&2; exit 4"], b"o\n", b"o\n", b"e\n")
    assert str(exc) == str(subprocess.CalledProcessError(4, exc.cmd))
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and (back.returncode, back.stderr) == (4, b"e\n")


def test_check_with_a_signal_death_and_success() -> None:
    with pytest.raises(pidsafe.CalledProcessError) as info:
        pidsafe.run(["sh", "-c", "kill -KILL $$"], check=True)
    assert info.value.returncode == -signal.SIGKILL
    assert "died with <Signals.SIGKILL: 9>" in str(info.value)
    assert pidsafe.run(["true"], check=True).returncode == 0


def test_check_returncode_raises_pidsafes_error() -> None:
    r = pidsafe.run(["sh", "-c", "exit 7"])
    assert isinstance(r, pidsafe.CompletedProcess)
    with pytest.raises(pidsafe.CalledProcessError) as info:
        r.check_returncode()
    assert info.value.returncode == 7
    pidsafe.run(["true"]).check_returncode()


def _pid_then(script: str) -> List[str]:
    """A shell that prints its pid, then runs ``script`` (exec'd, same pid)."""
    return ["sh", "-c", f"echo $$; {script}"]


def test_timeout_kills_and_reaps_the_child_with_the_output_so_far() -> None:
    fds, kids = open_fds(), children()
    with pytest.raises(pidsafe.TimeoutExpired) as info:
        pidsafe.run(_pid_then("echo err >&2; exec sleep 60"), capture_output=True,
                    timeout=0.5)
    exc = info.value
    assert isinstance(exc, subprocess.TimeoutExpired) and isinstance(exc, pidsafe.Error)
    assert exc.timeout == 0.5 and exc.cmd[0] == "sh"
    pid = int(exc.stdout.split()[0])
    assert exc.stderr == b"err\n"
    # Killed and reaped before run() raised: gone, not even a zombie.
    assert state(pid) == ""
    assert_nothing_left(fds, kids)


def test_timeout_output_like_subprocess_when_nothing_was_read() -> None:
    args = ["sleep", "60"]
    with pytest.raises(subprocess.TimeoutExpired) as want:
        subprocess.run(args, capture_output=True, timeout=0.2)
    with pytest.raises(pidsafe.TimeoutExpired) as got:
        pidsafe.run(args, capture_output=True, timeout=0.2)
    assert (got.value.stdout, got.value.stderr) == (want.value.stdout, want.value.stderr)
    assert (got.value.stdout, got.value.stderr) == (None, None)


def test_timeout_without_pipes_and_in_text_mode() -> None:
    fds, kids = open_fds(), children()
    with pytest.raises(pidsafe.TimeoutExpired) as info:
        pidsafe.run(["sleep", "60"], timeout=0.2)
    assert info.value.stdout is None
    # Text mode: the partial output is bytes, as subprocess gives it.
    with pytest.raises(pidsafe.TimeoutExpired) as info:
        pidsafe.run(["sh", "-c", "echo part; exec sleep 60"], stdout=PIPE, text=True,
                    timeout=0.5)
    assert info.value.stdout == b"part\n"
    assert_nothing_left(fds, kids)


def test_input_with_stdin_and_capture_output_with_a_stream_are_refused() -> None:
    kids = children()
    for kw in ({"input": b"x", "stdin": PIPE}, {"capture_output": True, "stdout": PIPE},
               {"capture_output": True, "stderr": subprocess.DEVNULL}):
        with pytest.raises(ValueError) as want:
            subprocess.run(["true"], **kw)
        with pytest.raises(ValueError) as got:
            pidsafe.run(["true"], **kw)
        assert str(got.value) == str(want.value)
    assert children() == kids
    # None counts as not given, as with subprocess.
    assert pidsafe.run(["cat"], input=b"ok", stdin=None, capture_output=True,
                       stdout=None).stdout == b"ok"


def test_input_to_a_child_that_does_not_read_it() -> None:
    r = pidsafe.run(["true"], input=b"x" * (1 << 20))
    assert r.returncode == 0


def test_spawn_errors_come_through_and_leave_nothing() -> None:
    fds, kids = open_fds(), children()
    with pytest.raises(FileNotFoundError):
        pidsafe.run(["/nonexistent/program"], capture_output=True)
    with pytest.raises(LookupError):
        pidsafe.run(["true"], encoding="no-such-codec")
    assert_nothing_left(fds, kids)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, Boom])
def test_a_raising_signal_handler_during_run_kills_and_reaps(alarm: Any, tmp_path: Any,
                                                             exc_type: type) -> None:
    """Ctrl-C, or a SIGALRM timeout of the caller's own, while run() waits."""
    fds, kids = open_fds(), children()
    pidfile = tmp_path / "pid"
    pids: List[int] = []

    def handler(signum: int, frame: Any) -> None:
        # Once, and only once the child surely exists (it wrote its pid).
        if pids:
            return
        text = pidfile.read_text() if pidfile.exists() else ""
        if text.endswith("\n"):
            pids.append(int(text))
            raise exc_type()

    alarm(0.05, handler)
    with pytest.raises(exc_type):
        pidsafe.run(["sh", "-c", f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; "
                     "exec sleep 60"], capture_output=True, input=b"unread")
    assert pids and state(pids[0]) == ""
    assert_nothing_left(fds, kids)


def test_run_under_faults_leaves_nothing(faults: Faults) -> None:
    """Every native or os call of a run() failed (EIO) or interrupted in turn."""
    def op() -> None:
        r = pidsafe.run(["sh", "-c", "cat; echo err >&2"], input=b"data" * 1000,
                        capture_output=True, timeout=60)
        assert r.stdout == b"data" * 1000 and r.stderr == b"err\n"

    n = faults.count(op)
    assert n >= 8
    fired = 0
    for mode in ("fail", "interrupt", "interrupt before"):
        for k in range(1, n + 2):
            with leak_check(f"{mode} at call {k}"):
                inject = (faults.fail_at(k, errno.EIO) if mode == "fail"
                          else faults.interrupt_at(k, before=mode == "interrupt before"))
                with inject as f:
                    try:
                        op()
                    except (OSError, Interrupt) as exc:
                        assert f.fired is not None, exc
                        assert (isinstance(exc, Interrupt) if mode != "fail"
                                else exc.errno == errno.EIO), (f.fired, exc)
                        fired += 1
                    else:
                        # A run's count varies with how the output arrives (one
                        # read or two): k may lie past this run's last call.
                        # Otherwise the fault must have fired and come out.
                        assert f.fired is None and len(f.calls) < k, \
                            (mode, k, f.fired, len(f.calls))
    assert fired >= 3 * (n // 2)


def test_called_process_error_is_made_once_and_lives_in_errors() -> None:
    assert errors.CalledProcessError is pidsafe.CalledProcessError
    assert "CalledProcessError" in dir(errors)
    assert pidsafe.CalledProcessError.__module__ == "pidsafe.errors"


def test_the_child_killed_on_an_error_path_is_logged(caplog: Any) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="pidsafe")
    with pytest.raises(pidsafe.TimeoutExpired) as info:
        pidsafe.run(_pid_then("exec sleep 60"), stdout=PIPE, timeout=0.5)
    pid = int(info.value.stdout)
    assert [(r.name, r.getMessage()) for r in caplog.records if r.name.startswith("pidsafe")] \
        == [("pidsafe.process", f"ending child {pid} on an error path: SIGKILL through its "
             "pidfd, then reaped")]
