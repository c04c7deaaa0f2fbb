"""pidsafe-runc: runc's command line over pidsafe.Container (root, real containers)."""

from __future__ import annotations

import json
import pathlib
import signal
import sys
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import pidsafe
from pidsafe.cli import runc

ENTRY = "from pidsafe.cli.runc import entry; entry()"


@pytest.fixture
def subreaper() -> Iterator[pidsafe.Reaper]:
    """Orphaned container inits (their creator, the CLI, exits) come to us, as to a shim."""
    with pidsafe.Reaper(subreaper=True) as r:
        yield r


class Cli:
    def __init__(self, reaper: pidsafe.Reaper, root: pathlib.Path) -> None:
        self.reaper = reaper
        self.root = root

    def __call__(self, *args: str, check: bool = True) -> Tuple[int, str, str]:
        # Files, not pipes: a created container inherits the CLI's stdio and
        # would hold a pipe open until it exits (as with runc).
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            with self.reaper.spawn([sys.executable, "-c", ENTRY, "--root", str(self.root),
                                    *args], stdout=out, stderr=err,
                                   stdin=pidsafe.DEVNULL) as p:
                code = p.wait(timeout=60)
            out.seek(0)
            err.seek(0)
            o, e = out.read().decode(), err.read().decode()
        if check:
            assert code == 0, (args, code, o, e)
        return code, o, e


@pytest.fixture
def cli(subreaper: pidsafe.Reaper, tmp_path: pathlib.Path) -> Iterator[Cli]:
    c = Cli(subreaper, tmp_path / "root")
    yield c
    for cid in pidsafe.Container.list(str(c.root)):
        c("delete", "--force", cid, check=False)


pytestmark = pytest.mark.root


def test_lifecycle(cli: Cli, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    bundle = make_bundle(["sleep", "1000"])
    pid_file = tmp_path / "init.pid"
    cli("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1")
    state = json.loads(cli("state", "c1")[1])
    assert state["status"] == "created" and state["id"] == "c1"
    assert int(pid_file.read_text()) == state["pid"]
    assert state["bundle"] == str(bundle) and state["created"].endswith("Z")
    cli("start", "c1")
    assert json.loads(cli("state", "c1")[1])["status"] == "running"
    listed = json.loads(cli("list", "--format", "json")[1])
    assert [c["id"] for c in listed] == ["c1"]
    assert json.loads(cli("ps", "--format", "json", "c1")[1]) == [state["pid"]]
    code, out, _ = cli("exec", "c1", "--", "sh", "-c", "hostname; exit 5", check=False)
    assert (code, out) == (5, "runc\n")
    code, _, err = cli("delete", "c1", check=False)
    assert code == 1 and "force" in err
    cli("kill", "c1", "TERM")   # pid 1 ignores it: no handler for TERM
    cli("kill", "c1", "SIGKILL")
    cli("delete", "c1")
    assert cli("list", "-q")[1] == ""


def test_run_exits_with_the_program_status(cli: Cli, make_bundle: Any) -> None:
    code, out, _ = cli("run", "--bundle", str(make_bundle(["sh", "-c", "echo hi; exit 3"])),
                       "r1", check=False)
    assert (code, out) == (3, "hi\n")
    assert cli("list", "-q")[1] == ""


def test_exec_with_a_process_json(cli: Cli, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "e1")
    process = {"args": ["sh", "-c", "echo $FOO $(id -u) $(pwd)"], "cwd": "/tmp",
               "env": ["FOO=bar", "PATH=/bin"], "user": {"uid": 65534, "gid": 65534}}
    (tmp_path / "p.json").write_text(json.dumps(process))
    code, out, err = cli("exec", "--process", str(tmp_path / "p.json"), "e1", check=False)
    assert (code, out) == (0, "bar 65534 /tmp\n"), err
    pid_file = tmp_path / "exec.pid"
    cli("exec", "--detach", "--pid-file", str(pid_file), "e1", "--", "sleep", "1000")
    assert int(pid_file.read_text()) in json.loads(cli("ps", "--format", "json", "e1")[1])


def test_errors_exit_1_and_reach_the_json_log(cli: Cli, tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log.json"
    code, _, err = cli("--log", str(log), "--log-format", "json", "state", "nope", check=False)
    assert code == 1 and "nope" in err
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error" and "nope" in last["msg"] and last["time"]
    assert cli("delete", "--force", "nope", check=False)[0] == 0
    assert cli("frobnicate", check=False)[0] == 3   # runc's status for an unknown command
    assert cli("--systemd-cgroup", "list", check=False)[0] == 1
    assert cli("kill", "nope", "NOSUCHSIG", check=False)[0] == 1


def test_features_is_json(cli: Cli) -> None:
    doc = json.loads(cli("features")[1])
    assert doc["ociVersionMax"].startswith("1.") and "user" in doc["linux"]["namespaces"]
    assert doc["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                            "poststart", "poststop"]


@pytest.mark.parametrize("text, sig", [("15", 15), ("TERM", signal.SIGTERM),
                                       ("SIGKILL", signal.SIGKILL), ("hup", signal.SIGHUP)])
def test_signal_spellings(text: str, sig: int) -> None:
    assert runc.parse_signal(text) == sig


def test_flag_parsing() -> None:
    a = runc.parse(["--bundle=/b", "-d", "id", "--pid-file", "/p"],
                   {"bundle": "value", "detach": "flag", "pid-file": "value"}, {"d": "detach"})
    assert a.flags == {"bundle": "/b", "detach": True, "pid-file": "/p"}
    assert a.positional == ["id"]
    with pytest.raises(runc.UsageError):
        runc.parse(["--nope"], {}, {})
    b = runc.parse(["id", "--", "sh", "-c", "x"], {}, {})
    assert b.positional == ["id"] and b.rest == ["sh", "-c", "x"]


def test_usage_does_not_need_root_or_a_root_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert runc.main(["--help"]) == 0
    assert "create" in capsys.readouterr().out
    assert runc.main([]) == 0   # runc shows its help too



def test_features_reports_seccomp(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe._sys import _seccomp

    assert runc.main(["features"]) == 0
    sec = json.loads(capsys.readouterr().out)["linux"]["seccomp"]
    assert sec["enabled"] is True
    assert {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS"} <= set(sec["actions"])
    assert "SCMP_ACT_NOTIFY" not in sec["actions"]   # refused: no listenerPath support
    assert "SCMP_CMP_MASKED_EQ" in sec["operators"] and "SCMP_ARCH_X86_64" in sec["archs"]
    assert sec["knownFlags"] == ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                 "SECCOMP_FILTER_FLAG_TSYNC"]
    assert set(sec["supportedFlags"]) <= set(sec["knownFlags"])
    assert "SECCOMP_FILTER_FLAG_TSYNC" in sec["supportedFlags"]   # Linux 3.17
    # A build without libseccomp's headers says so.
    monkeypatch.setattr(_seccomp, "available", lambda: False)
    assert runc.main(["features"]) == 0
    assert json.loads(capsys.readouterr().out)["linux"]["seccomp"] == {"enabled": False}


def _hook(name: str, out: pathlib.Path, fail: bool = False) -> Dict[str, Any]:
    script = f"echo {name} >> {out}; cat > /dev/null" + ("; exit 4" if fail else "")
    return {"path": "/bin/sh", "args": ["sh", "-c", script]}


def test_hooks_across_create_start_and_delete_processes(cli: Cli, make_bundle: Any,
                                                        tmp_path: pathlib.Path) -> None:
    """Each command is its own process: start and delete find the hooks in the state."""
    out = tmp_path / "order"
    log = tmp_path / "log.json"
    hooks = {"prestart": [_hook("prestart", out)], "createRuntime": [_hook("createRuntime", out)],
             "poststart": [_hook("poststart-broken", out, fail=True), _hook("poststart", out)],
             "poststop": [_hook("poststop", out)]}
    bundle = make_bundle(["sleep", "1000"], lambda d: d.update(hooks=hooks))
    cli("create", "--bundle", str(bundle), "h1")
    assert out.read_text().split() == ["prestart", "createRuntime"]
    code, _, err = cli("--log", str(log), "--log-format", "json", "start", "h1")
    assert "warning: poststart hook /bin/sh (hooks.poststart[0]) exited with status 4" in err
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["level"] == "warning" and "hooks.poststart[0]" in entry["msg"]
    assert json.loads(cli("state", "h1")[1])["status"] == "running"
    cli("delete", "--force", "h1")
    assert out.read_text().split() == ["prestart", "createRuntime", "poststart-broken",
                                       "poststart", "poststop"]
    assert cli("list", "-q")[1] == ""


def test_a_failing_prestart_hook_fails_create_and_leaves_no_container(
        cli: Cli, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "order"
    hooks = {"prestart": [_hook("prestart", out, fail=True)], "poststop": [_hook("poststop", out)]}
    bundle = make_bundle(["true"], lambda d: d.update(hooks=hooks))
    code, _, err = cli("create", "--bundle", str(bundle), "h2", check=False)
    assert code == 1 and "prestart hook /bin/sh (hooks.prestart[0]) exited with status 4" in err
    assert out.read_text().split() == ["prestart", "poststop"]
    assert cli("state", "h2", check=False)[0] == 1
    assert cli("list", "-q")[1] == ""
