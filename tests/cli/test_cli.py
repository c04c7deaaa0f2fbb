"""The ``pidsafe`` console script: ``doctor`` and ``run``."""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any, List, Tuple

import pytest

import pidsafe
from faults import Faults
from pidsafe import _features, cli

PIPE = subprocess.PIPE
SCRIPT = pathlib.Path(sys.executable).parent / "pidsafe"


def pidsafe_cli(*argv: str, input: bytes = b"") -> Tuple[int, str, str]:
    """Run the installed console script through pidsafe itself."""
    with pidsafe.spawn([SCRIPT, *argv], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
        out, err = p.communicate(input, timeout=60)
    assert out is not None and err is not None and p.returncode is not None
    return p.returncode, out.decode(), err.decode()


def test_console_script_is_installed() -> None:
    assert SCRIPT.exists(), f"{SCRIPT}: run scripts/bootstrap.sh"


def test_doctor_reports_kernel_features_and_capabilities() -> None:
    code, out, err = pidsafe_cli("doctor")
    assert (code, err) == (0, "")

    assert f"kernel    Linux {os.uname().release}" in out
    assert f"euid      {os.geteuid()}" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in pidsafe.features().names():
        assert name in rows, f"doctor does not list {name}"
        assert rows[name].split()[1] == "yes", rows[name]
    for cap in ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID"):
        assert cap in rows and rows[cap].split()[1] == ("yes" if os.geteuid() == 0 else "no")
    assert out.rstrip().endswith("ok: every feature pidsafe uses is available")


def test_doctor_fails_when_a_required_feature_is_missing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    broken = dataclasses.replace(pidsafe.features(), clone_pidfd=False,
                                 reasons={"clone_pidfd": "EINVAL"})
    monkeypatch.setattr(_features, "features", lambda: broken)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("clone_pidfd"))
    assert "NO (EINVAL)" in row and "required" in row
    assert "pidsafe cannot spawn here: missing clone_pidfd" in out


def test_doctor_succeeds_when_only_optional_features_are_missing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    partial = dataclasses.replace(pidsafe.features(), openat2=False,
                                  reasons={"openat2": "ENOSYS"})
    monkeypatch.setattr(_features, "features", lambda: partial)
    assert cli.main(["doctor"]) == 0
    assert "ok: spawn works; unavailable: openat2" in capsys.readouterr().out


def test_doctor_when_capabilities_cannot_be_read(faults: Faults,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    n = faults.count(lambda: cli.main(["doctor"]))
    capsys.readouterr()
    k = faults.calls.index("pidsafe_capget") + 1
    with faults.fail_at(k, errno.EPERM):
        assert cli.main(["doctor"]) == 0
    assert faults.fired == f"call {k}: pidsafe_capget" and n >= k
    out = capsys.readouterr().out
    assert "capabilities: unknown: [Errno 1] capget: Operation not permitted" in out


@pytest.mark.parametrize("argv,code", [
    (["run", "--", "sh", "-c", "exit 3"], 3),
    (["run", "sh", "-c", "exit 5"], 5),  # without "--"
    (["run", "--", "true"], 0),
    (["run", "--", "sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM),
    (["run", "--", "sh", "-c", "kill -KILL $$"], 128 + signal.SIGKILL),
])
def test_run_exits_like_a_shell(argv: List[str], code: int) -> None:
    assert pidsafe_cli(*argv)[0] == code


def test_run_passes_stdio_through() -> None:
    code, out, err = pidsafe_cli("run", "--", "sh", "-c", "cat; echo to-err >&2",
                                 input=b"through\n")
    assert (code, out, err) == (0, "through\n", "to-err\n")


def test_run_of_a_missing_program() -> None:
    code, out, err = pidsafe_cli("run", "--", "pidsafe-no-such-program")
    assert code == 127 and out == ""
    assert err.startswith("pidsafe run: ") and "pidsafe-no-such-program" in err


@pytest.mark.parametrize("argv", [["run"], ["run", "--"], [], ["frobnicate"]])
def test_usage_errors(argv: List[str]) -> None:
    code, out, err = pidsafe_cli(*argv)
    assert code == 2 and "usage: pidsafe" in err


# The program says it is ready, then exits 40 on the one signal, and only
# once it has it (a signal it does not expect kills it: another status).
TRAP = ("import signal, sys; signal.signal({sig}, lambda *a: sys.exit(40)); "
        "print('ready', flush=True); signal.pause()")


@pytest.mark.parametrize("name", cli.FORWARDED_SIGNALS)
def test_run_forwards_signals_to_the_child(name: str) -> None:
    sig = getattr(signal, name)
    with pidsafe.spawn([SCRIPT, "run", "--", sys.executable, "-c", TRAP.format(sig=int(sig))],
                       stdout=PIPE, stderr=PIPE) as p:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        p.send_signal(sig)  # to the pidsafe process only
        out, err = p.communicate(timeout=60)
    assert p.returncode == 40, err


def test_run_ends_with_its_program_on_sigterm() -> None:
    # What a supervisor (systemd, docker stop, timeout(1)) does: SIGTERM to
    # the one process it started.  The program must not be left running.
    # cat reads a pipe we hold open: only the signal can end it.
    r, w = os.pipe()
    try:
        with pidsafe.spawn([SCRIPT, "run", "--", "sh", "-c", "echo $$; exec cat"],
                           stdin=r, stdout=PIPE, stderr=PIPE) as p:
            assert p.stdout is not None
            cat = pidsafe.Process.from_pid(int(p.stdout.readline()))
            with cat:
                p.terminate()
                out, err = p.communicate(timeout=60)
                assert p.returncode == 128 + signal.SIGTERM, err
                assert not cat.is_alive()
    finally:
        os.close(r)
        os.close(w)


def test_module_entry_point() -> None:
    with pidsafe.spawn([sys.executable, "-m", "pidsafe.cli", "run", "--", "sh", "-c",
                        "exit 7"]) as p:
        assert p.wait(timeout=60) == 7


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--", "sh", "-c", "exit 4"]) == 4
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "doctor" in capsys.readouterr().out


def test_run_forwards_ctrl_c_that_arrives_right_after_spawn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The signal lands before run() is waiting: between spawn() returning and
    # the wait.  It must still reach the child, and run() must not hang.
    from pidsafe import process

    real_spawn = process.spawn

    def spawn_then_ctrl_c(*a: Any, **kw: Any) -> pidsafe.Process:
        p = real_spawn(*a, **kw)
        signal.raise_signal(signal.SIGINT)
        return p

    monkeypatch.setattr(process, "spawn", spawn_then_ctrl_c)
    # cat on a pipe we hold: only the forwarded signal can end it.
    r, w = os.pipe()
    try:
        assert cli.run(["cat"], stdin=r) == 128 + signal.SIGINT
    finally:
        os.close(r)
        os.close(w)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# -- doctor: a verdict per area, --json, --version ---------------------------------

AREAS = ["spawn", "reaper", "user_namespaces", "idmapped_mounts", "containers", "seccomp",
         "cgroups"]


def _check_schema(doc: Any) -> None:
    assert doc["schema"] == 1 and doc["pidsafe"] == pidsafe.__version__
    assert set(doc["kernel"]) == {"sysname", "release", "machine"}
    assert isinstance(doc["euid"], int) and isinstance(doc["ok"], bool)
    for f in doc["features"]:
        assert set(f) == {"name", "available", "reason", "required", "since", "what"}
        assert (f["reason"] is None) == f["available"]
    assert [f["name"] for f in doc["features"]] == pidsafe.features().names()
    assert [a["area"] for a in doc["areas"]] == AREAS
    for a in doc["areas"]:
        assert set(a) == {"area", "verdict", "reason", "non_root"}
        assert a["verdict"] in ("ok", "limited", "unavailable") and a["reason"] and a["non_root"]


def test_doctor_json_is_one_document_with_a_verdict_per_area() -> None:
    import json

    code, out, err = pidsafe_cli("doctor", "--json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    _check_schema(doc)
    verdicts = {a["area"]: a["verdict"] for a in doc["areas"]}
    assert doc["ok"] and verdicts["spawn"] == "ok"
    if os.geteuid() == 0:
        assert verdicts["user_namespaces"] == verdicts["idmapped_mounts"] == "ok"
        caps = {c["name"]: c["effective"] for c in doc["capabilities"]}
        assert caps["CAP_SYS_ADMIN"]


def test_doctor_prints_the_areas_as_a_table() -> None:
    code, out, _ = pidsafe_cli("doctor")
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.split() and line.split()[0] in AREAS}
    assert list(rows) == AREAS and set(rows.values()) <= {"ok", "limited", "unavailable"}


@pytest.mark.root
def test_doctor_as_a_user_without_privileges() -> None:
    """What nobody gets: spawn yes; idmapped mounts, containers, cgroups no."""
    import json

    # Everything imported first: the interpreter may live where nobody cannot read.
    script = ("import argparse, json, os, sys, pidsafe\n"
              "import pidsafe.cli._doctor, pidsafe.userns._helper, pidsafe.container\n"
              "import pidsafe.container.cgroup._layout, pidsafe._features\n"
              "from pidsafe.cli._doctor import doctor\n"
              "os.setgroups([]); os.setresgid(65534, 65534, 65534)\n"
              "os.setresuid(65534, 65534, 65534)\n"
              "pidsafe._sys.set_dumpable(True)\n"
              "sys.exit(doctor(as_json=True))\n")
    r = pidsafe.run([sys.executable, "-c", script], capture_output=True, text=True,
                    timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    _check_schema(doc)
    assert doc["euid"] == 65534
    verdicts = {a["area"]: (a["verdict"], a["reason"]) for a in doc["areas"]}
    assert verdicts["spawn"][0] == verdicts["reaper"][0] == "ok"
    assert verdicts["idmapped_mounts"] == ("unavailable", "needs CAP_SYS_ADMIN (run as root)")
    assert verdicts["containers"] == ("unavailable",
                                      "creating a container needs root (CAP_SYS_ADMIN)")
    assert verdicts["cgroups"][0] == "unavailable" and "needs root" in verdicts["cgroups"][1]
    assert verdicts["user_namespaces"][0] in ("limited", "unavailable")
    if verdicts["user_namespaces"][0] == "limited":
        assert "your own uid and gid" in verdicts["user_namespaces"][1]


def test_version() -> None:
    code, out, _ = pidsafe_cli("--version")
    assert (code, out) == (0, f"pidsafe {pidsafe.__version__}\n")
