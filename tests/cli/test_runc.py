"""pidsafe-runc: runc's command line over pidsafe.Container (root, real containers)."""

from __future__ import annotations

import json
import pathlib
import signal
import sys
from typing import Any, Dict, Sequence

import pytest

import pidsafe
from pidsafe.cli import runc

from runc_cli import ENTRY, Cli, cgroup_dir, cli, subreaper  # noqa: F401 - fixtures


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


def test_ignored_properties_are_warnings_in_the_log(cli: Cli, make_bundle: Any,
                                                    tmp_path: pathlib.Path) -> None:
    """runtime-spec "Extensibility": unknown properties are ignored; pidsafe says so."""
    log = tmp_path / "log.json"

    def edit(doc: Dict[str, Any]) -> None:
        doc["unknown"] = "x"
        doc["linux"]["namespace"] = []
        doc["windows"] = {"layerFolders": []}

    bundle = make_bundle(["true"], edit)
    code, _, err = cli("--log", str(log), "--log-format", "json", "run", "--bundle",
                       str(bundle), "x1", check=False)
    assert code == 0, err
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["warning"] * 3
    assert [e["msg"].split(" ignored: ")[0] for e in entries] == [
        "config.json: linux.namespace", "config.json: unknown", "config.json: windows"]
    assert "another platform" in entries[2]["msg"]
    assert "warning: config.json: unknown ignored: runtime-spec does not define it" in err
    assert cli("list", "-q")[1] == ""


def test_exec_process_json_with_an_unknown_property_is_a_warning(
        cli: Cli, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "e2")
    (tmp_path / "p.json").write_text(json.dumps(
        {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0, "nick": "root"}}))
    log = tmp_path / "log.txt"
    code, _, err = cli("--log", str(log), "exec", "--process", str(tmp_path / "p.json"), "e2",
                       check=False)
    assert code == 0, err
    [line] = log.read_text().splitlines()
    assert "level=warning" in line and "process.user.nick ignored" in line


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
    b = runc.parse(["id", "--", "sh", "-c", "x"], {"c": "flag"}, {})
    assert b.positional == ["id", "sh", "-c", "x"] and b.flags == {}


def test_flags_end_at_a_double_dash_and_with_stop_after() -> None:
    """exec's `ID sh -c CMD`: -c was taken as exec's --cap (and -e, -d, -t, -u alike)."""
    spec = {"cap": "list", "env": "list", "detach": "flag", "tty": "flag", "user": "value"}
    aliases = {"c": "cap", "e": "env", "d": "detach", "t": "tty", "u": "user"}
    a = runc.parse(["-d", "id", "sh", "-c", "x", "-e", "-d", "-t", "-u", "0"], spec, aliases,
                   stop_after=1)
    assert a.flags == {"detach": True}
    assert a.positional == ["id", "sh", "-c", "x", "-e", "-d", "-t", "-u", "0"]
    b = runc.parse(["id", "-d"], spec, aliases, stop_after=1)
    assert b.flags == {} and b.positional == ["id", "-d"]
    # Without stop_after, flags may follow the id (as runc's other commands).
    c = runc.parse(["id", "-d", "--user=5"], spec, aliases)
    assert c.flags == {"detach": True, "user": "5"} and c.positional == ["id"]
    d = runc.parse(["--bundle", "b", "--", "id"], {"bundle": "value"}, {})
    assert d.flags == {"bundle": "b"} and d.positional == ["id"]
    with pytest.raises(runc.UsageError, match="needs an argument"):
        runc.parse(["id", "--user"], spec, aliases)


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


# --- pause / resume / update / preserve-fds / labels (containerd's shim uses them) ----

def _kernel_frozen(pid: int) -> bool:
    """Whether the kernel says the cgroup of ``pid`` is frozen (v2 or v1 freezer)."""
    for line in pathlib.Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        if key == "":
            for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                events = pathlib.Path(mount + path) / "cgroup.events"
                if events.exists() and "frozen 1" in events.read_text().splitlines():
                    return True
        elif "freezer" in key.split(","):
            state = pathlib.Path("/sys/fs/cgroup/freezer" + path) / "freezer.state"
            if state.exists() and state.read_text().strip() == "FROZEN":
                return True
    return False


#: Where a frozen task sleeps (v2: in the signal-delivery freezer trap; v1: the refrigerator).
FROZEN_WCHAN = {"get_signal", "do_freezer_trap", "do_signal_stop", "__refrigerator"}


def test_pause_freezes_every_process_and_resume_thaws(cli: Cli, make_bundle: Any) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sh", "-c", "sleep 1000 & wait"])), "p1")
    pid = json.loads(cli("state", "p1")[1])["pid"]
    assert not _kernel_frozen(pid)
    cli("pause", "p1")
    state = json.loads(cli("state", "p1")[1])
    assert state["status"] == "paused" and state["pid"] == pid
    assert _kernel_frozen(pid)
    pids = json.loads(cli("ps", "--format", "json", "p1")[1])
    assert len(pids) == 2
    for p in pids:   # really stopped in the kernel's freezer, not merely marked
        assert pathlib.Path(f"/proc/{p}/wchan").read_text() in FROZEN_WCHAN, p
    assert json.loads(cli("list", "--format", "json")[1])[0]["status"] == "paused"
    code, _, err = cli("pause", "p1", check=False)
    assert code == 1 and "paused" in err
    code, _, err = cli("exec", "p1", "--", "true", check=False)
    assert code == 1 and "paused" in err
    cli("resume", "p1")
    assert json.loads(cli("state", "p1")[1])["status"] == "running"
    assert not _kernel_frozen(pid)
    code, _, err = cli("resume", "p1", check=False)
    assert code == 1 and "running" in err
    assert cli("exec", "p1", "--", "true")[0] == 0   # it runs again


def test_a_paused_container_is_killed_and_deleted(cli: Cli, make_bundle: Any) -> None:
    bundle = str(make_bundle(["sleep", "1000"]))
    cli("run", "--detach", "--bundle", bundle, "k1")
    cli("pause", "k1")
    cli("kill", "k1", "KILL")      # a frozen v1 init dies only once thawed: kill thaws
    assert json.loads(cli("state", "k1")[1])["status"] == "stopped"
    cli("delete", "k1")
    cli("run", "--detach", "--bundle", bundle, "k2")
    cli("pause", "k2")
    cli("delete", "--force", "k2")
    assert cli("list", "-q")[1] == ""


def test_pause_and_resume_of_a_stopped_container_fail(cli: Cli, make_bundle: Any) -> None:
    cli("run", "--keep", "--bundle", str(make_bundle(["true"])), "s1")
    for cmd in ("pause", "resume"):
        code, _, err = cli(cmd, "s1", check=False)
        assert code == 1 and "stopped" in err, (cmd, err)
    code, _, err = cli("update", "--pids-limit", "5", "s1", check=False)
    assert code == 1 and "stopped" in err


def test_update_resources_json_changes_the_cgroup_files(cli: Cli, make_bundle: Any,
                                                        tmp_path: pathlib.Path) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "u1")
    pid = json.loads(cli("state", "u1")[1])["pid"]
    mem, pids = cgroup_dir(pid, "memory"), cgroup_dir(pid, "pids")
    v1_mem = (mem / "memory.limit_in_bytes").exists()
    mem_file = mem / ("memory.limit_in_bytes" if v1_mem else "memory.max")
    resources = tmp_path / "r.json"
    resources.write_text(json.dumps({"memory": {"limit": 32 << 20}, "pids": {"limit": 50}}))
    with open(resources, "rb") as stdin:   # '-': from stdin, as containerd's shim sends it
        cli("update", "--resources", "-", "u1", stdin=stdin)
    assert mem_file.read_text().strip() == str(32 << 20)
    assert (pids / "pids.max").read_text().strip() == "50"
    resources.write_text(json.dumps({"pids": {"limit": -1}}))
    cli("update", "-r", str(resources), "u1")
    assert (pids / "pids.max").read_text().strip() == "max"
    assert mem_file.read_text().strip() == str(32 << 20)   # only what is given changes
    c = pidsafe.Container.load(str(cli.root), "u1")
    try:   # the recorded config follows
        res = c.spec().linux.resources
        assert res.pids_limit == -1 and res.memory is not None and res.memory.limit == 32 << 20
    finally:
        c.close()


def test_update_ignores_an_unknown_property_with_a_warning(cli: Cli, make_bundle: Any,
                                                           tmp_path: pathlib.Path) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "u4")
    pid = json.loads(cli("state", "u4")[1])["pid"]
    (tmp_path / "r.json").write_text(json.dumps({"pids": {"limit": 5, "max": 3}}))
    code, _, err = cli("update", "-r", str(tmp_path / "r.json"), "u4", check=False)
    assert code == 0 and "--resources: linux.resources.pids.max ignored" in err, err
    assert (cgroup_dir(pid, "pids") / "pids.max").read_text().strip() == "5"


def test_update_flags_change_the_cgroup_files(cli: Cli, make_bundle: Any) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "u2")
    pid = json.loads(cli("state", "u2")[1])["pid"]
    cli("update", "--memory", "64m", "--pids-limit", "7", "--cpu-share", "512", "u2")
    mem = cgroup_dir(pid, "memory")
    limit = mem / "memory.limit_in_bytes"
    assert (limit if limit.exists() else mem / "memory.max").read_text().strip() == str(64 << 20)
    assert (cgroup_dir(pid, "pids") / "pids.max").read_text().strip() == "7"
    cpu = cgroup_dir(pid, "cpu")
    if (cpu / "cpu.shares").exists():
        assert (cpu / "cpu.shares").read_text().strip() == "512"
    else:
        assert (cpu / "cpu.weight").read_text().strip() == str(runc_cpu_weight(512))


def runc_cpu_weight(shares: int) -> int:
    from pidsafe.container.cgroup._resources import cpu_weight

    return cpu_weight(shares)


@pytest.mark.parametrize("doc, field", [
    ({"blockIO": {"weight": 10}}, "blockIO"),
    ({"memory": {"limit": "lots"}}, "memory.limit"),
    ({"cpu": {"realtimeRuntime": 5}}, "cpu.realtimeRuntime"),   # the spec's, not done
])
def test_update_refuses_bad_resources_and_changes_nothing(cli: Cli, make_bundle: Any,
                                                          tmp_path: pathlib.Path,
                                                          doc: Any, field: str) -> None:
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "u3")
    pid = json.loads(cli("state", "u3")[1])["pid"]
    before = (cgroup_dir(pid, "pids") / "pids.max").read_text()
    (tmp_path / "r.json").write_text(json.dumps({**doc, "pids": doc.get("pids", {"limit": 9})}))
    code, _, err = cli("update", "-r", str(tmp_path / "r.json"), "u3", check=False)
    assert code == 1 and f"linux.resources.{field}" in err, err
    assert (cgroup_dir(pid, "pids") / "pids.max").read_text() == before
    code, _, err = cli("update", "-r", str(tmp_path / "missing.json"), "u3", check=False)
    assert code == 1 and "missing.json" in err
    code, _, err = cli("update", "--blkio-weight", "10", "u3", check=False)
    assert code == 1 and "--blkio-weight" in err


def test_preserve_fds_reach_the_container_program(cli: Cli, make_bundle: Any,
                                                  tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").write_text("from fd 3\n")
    (tmp_path / "b").write_text("from fd 4\n")
    fds = [str(tmp_path / "a"), str(tmp_path / "b")]
    bundle = str(make_bundle(["sh", "-c", "cat <&3; cat <&4; ls /proc/self/fd"]))
    code, out, err = cli("run", "--preserve-fds", "2", "--bundle", bundle, "f1", fds=fds,
                         check=False)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["from fd 3", "from fd 4"]
    assert sorted(lines[2:], key=int) == ["0", "1", "2", "3", "4", "5"]   # 5: ls's own
    # Without the flag the same fds stay out of the container.
    code, out, err = cli("run", "--bundle", bundle, "f2", fds=fds, check=False)
    assert out.splitlines() == ["0", "1", "2", "3"] and "Bad file descriptor" in err, (out, err)
    # exec too.
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "f3")
    code, out, err = cli("exec", "--preserve-fds", "1", "f3", "--", "sh", "-c", "cat <&3",
                         fds=fds[1:], check=False)
    assert (code, out) == (0, "from fd 4\n"), err


def test_preserve_fds_that_are_not_open_are_refused_leaving_nothing(
        cli: Cli, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").write_text("x")
    bundle = str(make_bundle(["true"]))
    code, _, err = cli("run", "--preserve-fds", "2", "--bundle", bundle, "f4",
                       fds=[str(tmp_path / "a")], check=False)
    assert code == 1 and "fd 4 is not open" in err
    code, _, err = cli("create", "--preserve-fds", "x", "--bundle", bundle, "f4", check=False)
    assert code == 1 and "--preserve-fds" in err
    assert cli("list", "-q")[1] == ""
    assert not cli.root.exists() or not any(p.name.startswith("f4")
                                            for p in cli.root.iterdir())


@pytest.mark.parametrize("where, key, value, lsm", [
    ("linux", "mountLabel", "system_u:object_r:container_file_t:s0:c1,c2", "SELinux"),
    ("process", "selinuxLabel", "system_u:system_r:container_t:s0:c1,c2", "SELinux"),
    ("process", "apparmorProfile", "docker-default", "AppArmor"),
])
def test_security_labels_are_refused_leaving_nothing(cli: Cli, make_bundle: Any, where: str,
                                                     key: str, value: str, lsm: str) -> None:
    from pidsafe.container.config._lsm import apparmor_enabled, selinux_enabled

    bundle = make_bundle(["true"], lambda d: d[where].__setitem__(key, value))
    code, _, err = cli("create", "--bundle", str(bundle), "l1", check=False)
    assert code == 1 and f"{where}.{key}" in err and lsm in err, err
    enabled = selinux_enabled() if lsm == "SELinux" else apparmor_enabled()
    assert ("is not enabled on this machine" in err) == (not enabled), err
    assert cli("list", "-q")[1] == ""
    assert not cli.root.exists() or list(cli.root.iterdir()) == []
    cgroups = pathlib.Path("/sys/fs/cgroup/pids/pidsafe")
    assert not cgroups.exists() or not [p for p in cgroups.iterdir() if p.name.endswith("-l1")]


def test_no_pivot_and_no_new_keyring_are_accepted(cli: Cli, make_bundle: Any) -> None:
    code, out, err = cli("run", "--no-pivot", "--no-new-keyring", "--bundle",
                         str(make_bundle(["sh", "-c", "echo in"])), "n1", check=False)
    assert (code, out) == (0, "in\n"), err


@pytest.mark.parametrize("cmd", ["create", "run", "start", "state", "kill", "delete", "exec",
                                 "list", "ps", "features", "pause", "resume", "update"])
def test_every_command_has_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert runc.main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pidsafe-runc " + cmd) or cmd == "features", out
    assert runc.main(["help", cmd]) == 0
    assert capsys.readouterr().out == out
    assert cmd in runc.USAGE


def _orphan_exit(sub: Any, pid: int) -> Any:
    while True:
        e = sub.get(timeout=30)
        if e.pid == pid:
            return e


def test_detached_processes_leave_their_exit_status_to_the_subreaper(
        cli: Cli, make_bundle: Any, tmp_path: pathlib.Path) -> None:
    """containerd's shim (a subreaper) waits for these exits: the CLI must never reap them,
    not even when the process is gone before the CLI closes its handle."""
    pid_file = tmp_path / "pid"
    with cli.reaper.subscribe() as sub:
        cli("run", "--detach", "--pid-file", str(pid_file), "--bundle",
            str(make_bundle(["sh", "-c", "exit 9"])), "d1")
        e = _orphan_exit(sub, int(pid_file.read_text()))
        assert (e.orphan, e.returncode) == (True, 9)
        cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "d2")
        for i in range(3):   # quick ones: most are gone before the CLI exits
            cli("exec", "--detach", "--pid-file", str(pid_file), "d2", "--", "sh", "-c",
                f"exit {20 + i}")
            e = _orphan_exit(sub, int(pid_file.read_text()))
            assert (e.orphan, e.returncode) == (True, 20 + i)


def test_a_pidsafe_error_exits_1_with_its_message(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Not a traceback: e.g. delete's wait for an init its parent never reaps."""
    def slow(root: str, argv: Sequence[str]) -> int:
        raise pidsafe.TimeoutExpired(["init"], 10.0)

    monkeypatch.setitem(runc.COMMANDS, "delete", slow)
    assert runc.main(["--root", "/nonexistent", "delete", "--force", "c1"]) == 1
    assert "timed out after 10" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_run_in_the_foreground_forwards_signals_to_init(cli: Cli, make_bundle: Any,
                                                        sig: int) -> None:
    """As ``runc run``: a signal to the runtime reaches the program, which decides."""
    name = signal.Signals(sig).name[3:]
    bundle = make_bundle(["sh", "-c", f'trap "exit 7" {name}; sleep 1000 & echo ready; wait'])
    with cli.reaper.spawn([sys.executable, "-c", ENTRY, "--root", str(cli.root), "run",
                           "--bundle", str(bundle), "fwd"], stdout=pidsafe.PIPE,
                          stdin=pidsafe.DEVNULL) as p:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(sig)
        assert p.wait(timeout=60) == 7
    assert pidsafe.Container.list(str(cli.root)) == []


def test_debug_logs_what_was_created_and_undone(cli: Cli, make_bundle: Any,
                                                tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log.json"
    bundle = make_bundle(["true"])
    code, _, err = cli("--debug", "--log", str(log), "--log-format", "json", "run", "--bundle",
                       str(bundle), "d1")
    lines = [line for line in err.splitlines() if line.startswith("pidsafe-runc: debug: ")]
    text = "\n".join(lines)
    for want in ("pidsafe.cgroup: cgroup /pidsafe/", "pidsafe.container: container d1 created",
                 "pidsafe.container: container d1 started",
                 "pidsafe.container: undoing container d1",
                 "pidsafe.container: container d1 deleted"):
        assert want in text, (want, err)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["msg"] for e in logged if e["level"] == "debug"] == [
        line[len("pidsafe-runc: debug: "):] for line in lines]
    # Without --debug: none of it.
    code, _, err = cli("run", "--bundle", str(bundle), "d2")
    assert "debug" not in err
