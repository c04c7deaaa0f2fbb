"""OCI hooks: order, state on stdin, namespaces, timeouts, failure semantics (root)."""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import pathlib
import signal
from typing import Any, Callable, Dict, List, Optional

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults, Interrupt
from pidsafe.container.config._hooks import Hook
from pidsafe.container._cgroup_defaults import default_cgroup
from pidsafe.container._hooks import run_hook

pytestmark = pytest.mark.root

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
#: Where each hook runs: the runtime's namespaces, or the container's.
IN_CONTAINER = {"createContainer", "startContainer"}
HOST_SH = "/bin/sh"


def _recorder(kind: str, log_dir: str) -> Dict[str, Any]:
    """A hook that appends its name to LOG_DIR/order and keeps its stdin and namespaces.

    ``log_dir`` as the hook sees it (``/hooks`` inside the container).
    """
    script = (f"echo {kind} >> {log_dir}/order; cat > {log_dir}/{kind}.json; "
              f"readlink /proc/self/ns/mnt > {log_dir}/{kind}.mnt; "
              f"readlink /proc/self/ns/pid > {log_dir}/{kind}.pid; "
              f"readlink /proc/self/ns/uts > {log_dir}/{kind}.uts; "
              f"cat /proc/sys/kernel/hostname > {log_dir}/{kind}.name; "
              f"echo \"$HOOK_VAR\" > {log_dir}/{kind}.env")
    if kind == "poststart":
        # The program has been executed by now: init's comm is the program's.
        script += f"; pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' {log_dir}/{kind}.json)"
        script += f"; cat /proc/$pid/comm > {log_dir}/poststart.comm"
    return {"path": "/bin/sh" if kind == "startContainer" else HOST_SH,
            "args": ["sh", "-c", script], "env": [f"HOOK_VAR={kind}-env"]}


def _with_hooks(hooks: Dict[str, List[Dict[str, Any]]], log: Optional[pathlib.Path] = None
                ) -> Callable[[Dict[str, Any]], None]:
    def edit(doc: Dict[str, Any]) -> None:
        doc["hooks"] = hooks
        doc["annotations"] = {"org.example.hooks": "yes"}
        if log is not None:
            doc["mounts"].append({"destination": "/hooks", "type": "bind", "source": str(log),
                                  "options": ["rbind"]})
    return edit


def _cgroup_dirs(state_dir: pathlib.Path, cid: str) -> List[str]:
    rel = default_cgroup(str(state_dir), cid).lstrip("/")
    return glob.glob(f"/sys/fs/cgroup/{rel}") + glob.glob(f"/sys/fs/cgroup/*/{rel}")


def _ns(path: str) -> str:
    return os.readlink(path)


def test_all_six_hooks_run_in_order_in_their_namespaces_with_the_state(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    hooks = {k: [_recorder(k, "/hooks" if k == "startContainer" else str(log))] for k in KINDS}
    bundle = make_bundle(["sleep", "1000"], _with_hooks(hooks, log))
    c = pidsafe.Container.create("h", bundle, state_dir=str(state_dir))
    try:
        pid = c.pid
        assert (log / "order").read_text().split() == list(KINDS[:3])
        init_mnt, init_pid = _ns(f"/proc/{pid}/ns/mnt"), _ns(f"/proc/{pid}/ns/pid")
        init_uts = _ns(f"/proc/{pid}/ns/uts")
        c.start()
        assert (log / "order").read_text().split() == list(KINDS[:5])
        assert (log / "poststart.comm").read_text() == "sleep\n"
        c.kill(signal.SIGKILL)
        c.wait(timeout=10)
    finally:
        c.delete(force=True)
    assert (log / "order").read_text().split() == list(KINDS)
    host_mnt, host_pid = _ns("/proc/self/ns/mnt"), _ns("/proc/self/ns/pid")
    host_uts = _ns("/proc/self/ns/uts")
    # The hostname is set after pivot_root: startContainer sees it, createContainer not yet.
    assert (log / "startContainer.name").read_text() == "runc\n"
    for kind in KINDS:
        inside = kind in IN_CONTAINER
        assert (log / f"{kind}.mnt").read_text().strip() == (init_mnt if inside else host_mnt)
        assert (log / f"{kind}.pid").read_text().strip() == (init_pid if inside else host_pid)
        assert (log / f"{kind}.uts").read_text().strip() == (init_uts if inside else host_uts)
        assert (log / f"{kind}.env").read_text() == f"{kind}-env\n"
        state = json.loads((log / f"{kind}.json").read_text())
        want = {"ociVersion": "1.0.2", "id": "h", "bundle": str(bundle),
                "annotations": {"org.example.hooks": "yes"},
                "status": {"poststart": "running", "poststop": "stopped"}.get(kind, "created")}
        if kind != "poststop":
            want["pid"] = pid
        assert state == want, kind


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_create_hook_fails_create_and_leaves_nothing(
        kind: str, make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    hooks = {k: [_recorder(k, str(log))] for k in KINDS if k not in IN_CONTAINER or
             k == "createContainer"}
    hooks[kind] = [{"path": HOST_SH, "args": ["sh", "-c", "echo out; echo oops >&2; exit 3"]},
                   _recorder(kind, str(log))]
    bundle = make_bundle(["sh", "-c", "touch /program-ran"], _with_hooks(hooks))
    root = pathlib.Path(bundle) / "rootfs"
    os.chmod(root, 0o755)
    with pytest.raises(pidsafe.HookError) as info:
        pidsafe.Container.create("f", bundle, state_dir=str(state_dir))
    exc = info.value
    assert isinstance(exc, pidsafe.ContainerError) and exc.errno == errno.ECHILD
    assert (exc.kind, exc.index, exc.returncode) == (kind, 0, 3)
    assert exc.field == f"hooks.{kind}[0]" and exc.path == HOST_SH
    assert b"out\n" in exc.output and b"oops\n" in exc.output
    assert "exited with status 3: out\noops" in str(exc)
    before = KINDS[:KINDS.index(kind)]
    # The hooks before ran; none after; then the container was destroyed, then poststop.
    assert (log / "order").read_text().split() == [*before, "poststop"]
    assert json.loads((log / "poststop.json").read_text())["status"] == "stopped"
    assert pidsafe.Container.list(str(state_dir)) == []
    assert _cgroup_dirs(state_dir, "f") == []
    assert not (root / "program-ran").exists()


def test_a_failing_start_container_hook_destroys_the_container(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    hooks = {"startContainer": [{"path": "/bin/false"}, _recorder("startContainer", "/hooks")],
             "poststart": [_recorder("poststart", str(log))],
             "poststop": [_recorder("poststop", str(log))]}
    bundle = make_bundle(["sh", "-c", "touch /hooks/program-ran"], _with_hooks(hooks, log))
    c = pidsafe.Container.create("s", bundle, state_dir=str(state_dir))
    pid = c.pid
    with pytest.raises(pidsafe.HookError) as info:
        c.start()
    assert (info.value.kind, info.value.returncode) == ("startContainer", 1)
    assert (log / "order").read_text().split() == ["poststop"]
    assert not (log / "program-ran").exists()
    assert c.state()["status"] == "stopped" and not os.path.exists(f"/proc/{pid}")
    with pytest.raises(pidsafe.ContainerLookupError):
        pidsafe.Container.load(str(state_dir), "s")
    assert _cgroup_dirs(state_dir, "s") == []
    c.delete()   # already gone: nothing to do, and no second poststop
    assert (log / "order").read_text().split() == ["poststop"]


@pytest.mark.parametrize("kind", ["poststart", "poststop"])
def test_a_failing_poststart_or_poststop_hook_is_a_warning(
        kind: str, make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path,
        caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "log"
    log.mkdir()
    hooks = {kind: [{"path": HOST_SH, "args": ["sh", "-c", "echo broken >&2; exit 9"]},
                    _recorder(kind, str(log))]}
    bundle = make_bundle(["true"], _with_hooks(hooks))
    with caplog.at_level(logging.WARNING, logger="pidsafe.container"):
        c = pidsafe.Container.create("w", bundle, state_dir=str(state_dir))
        try:
            c.start()
            assert c.wait(timeout=10) == 0
        finally:
            c.delete()
    assert (log / "order").read_text().split() == [kind]
    [record] = [r for r in caplog.records if r.name == "pidsafe.container"]
    assert record.levelno == logging.WARNING
    assert f"{kind} hook {HOST_SH} (hooks.{kind}[0]) exited with status 9: broken" in \
        record.getMessage()


@pytest.mark.parametrize("kind", ["createRuntime", "createContainer"])
def test_a_hook_past_its_timeout_is_killed(kind: str, make_bundle: Any,
                                           state_dir: pathlib.Path) -> None:
    # exec: the shell becomes sleep, so killing the hook leaves no process behind.
    hooks = {kind: [{"path": HOST_SH, "args": ["sh", "-c", "exec sleep 1000"], "timeout": 1}]}
    bundle = make_bundle(["true"], _with_hooks(hooks))
    with pytest.raises(pidsafe.HookError) as info:
        pidsafe.Container.create("t", bundle, state_dir=str(state_dir))
    assert isinstance(info.value, TimeoutError) and info.value.errno == errno.ETIMEDOUT
    assert info.value.returncode == -signal.SIGKILL
    assert "timed out and was killed" in str(info.value)
    assert _cgroup_dirs(state_dir, "t") == []


@pytest.mark.parametrize("kind", ["createRuntime", "createContainer"])
def test_a_hook_that_cannot_be_executed_names_its_path(kind: str, make_bundle: Any,
                                                       state_dir: pathlib.Path,
                                                       tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    bundle = make_bundle(["true"], _with_hooks({kind: [{"path": missing}]}))
    with pytest.raises(pidsafe.HookError) as info:
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir))
    assert isinstance(info.value, FileNotFoundError) and info.value.returncode is None
    assert info.value.filename == missing and info.value.field == f"hooks.{kind}[0]"


def test_hooks_without_args_get_their_path_as_argv0_and_an_empty_environment(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "hook.sh"
    out = tmp_path / "out"
    script.write_text(f"#!/bin/sh\necho \"$0|$(env | grep -v '^PWD=' | sort | tr '\\n' ' ')\""
                      f" > {out}\n")
    script.chmod(0o755)
    bundle = make_bundle(["true"], _with_hooks({"createRuntime": [{"path": str(script)}]}))
    c = pidsafe.Container.create("a", bundle, state_dir=str(state_dir))
    c.delete(force=True)
    assert out.read_text() == f"{script}|\n"


def test_hooks_run_by_a_container_loaded_in_another_handle(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """start and delete from other handles (the CLI's separate processes) have the hooks."""
    log = tmp_path / "log"
    log.mkdir()
    hooks = {k: [_recorder(k, str(log))] for k in ("poststart", "poststop")}
    hooks["startContainer"] = [_recorder("startContainer", "/hooks")]
    c = pidsafe.Container.create("l", make_bundle(["true"], _with_hooks(hooks, log)),
                                 state_dir=str(state_dir))
    try:
        other = pidsafe.Container.load(str(state_dir), "l")
        other.start()
        other.close()
        c.wait(timeout=10)
        pidsafe.Container.load(str(state_dir), "l").delete()
    finally:
        c.delete(force=True)
    assert (log / "order").read_text().split() == ["startContainer", "poststart", "poststop"]


def test_container_hooks_in_a_user_namespace_are_its_root(make_bundle: Any,
                                                          state_dir: pathlib.Path) -> None:
    def userns(doc: Dict[str, Any]) -> None:
        doc["linux"]["namespaces"].append({"type": "user"})
        m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = m
        # Fails on purpose: what it printed comes back in the error.
        doc["hooks"] = {"createContainer": [{"path": HOST_SH, "args": [
            "sh", "-c", "echo $(id -u):$(id -g) $(cat /proc/self/uid_map); exit 1"]}]}

    with pytest.raises(pidsafe.HookError) as info:
        pidsafe.Container.create("u", make_bundle(["true"], userns), state_dir=str(state_dir))
    assert info.value.output.split() == [b"0:0", b"0", b"100000", b"65536"]


# -- fault injection on the hook spawn --------------------------------------------------

def _sweep(faults: Faults, op: Callable[[], None], what: str) -> None:
    n = faults.count(op)
    calls = list(faults.calls)
    assert n > 5, calls
    for interrupt in (False, True):
        for k in range(1, n + 1):
            with leak_check(f"{what} with call {k} of {n} ({calls[k - 1]}) "
                            f"{'interrupted' if interrupt else 'failed'}", check_mounts=False):
                ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
                try:
                    with ctx:
                        op()
                except Interrupt:
                    assert interrupt
                except (OSError, pidsafe.Error) as exc:
                    assert not interrupt, f"call {k} ({faults.fired}): {exc!r}"


def test_runtime_hook_spawn_under_faults(faults: Faults) -> None:
    hook = Hook(HOST_SH, ("sh", "-c", "cat >/dev/null"))
    _sweep(faults, lambda: run_hook("createRuntime", 0, hook, b'{"id": "x"}'), "runtime hook")


def test_container_hook_spawn_under_faults(faults: Faults, make_bundle: Any,
                                           state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("fi", make_bundle(["true"]), state_dir=str(state_dir))
    try:
        init = c.process()
        assert init is not None
        hook = Hook("/bin/sh", ("sh", "-c", "cat >/dev/null"))
        _sweep(faults, lambda: run_hook("startContainer", 0, hook, b"{}", init=init,
                                        spec=c.spec()), "container hook")
    finally:
        c.delete(force=True)


def test_create_with_a_hook_under_faults_at_the_hooks_step(
        faults: Faults, make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call of the create hooks' part failing or interrupted: nothing stays behind."""
    from pidsafe.container import _hooks

    log = tmp_path / "log"
    log.mkdir()
    hooks = {"createRuntime": [_recorder("createRuntime", str(log))],
             "createContainer": [_recorder("createContainer", str(log))]}
    bundle = make_bundle(["true"], _with_hooks(hooks))
    original = _hooks.run_create_hooks

    def hooked(spec: Any, record: Any, init: Any) -> None:
        # Faults only in here: the rest of create has its own sweep.
        with faults.resumed():
            original(spec, record, init)

    monkeypatch.setattr(_hooks, "run_create_hooks", hooked)

    def create() -> None:
        with faults.paused():
            pidsafe.Container.create("fh", bundle, state_dir=str(state_dir)).delete(force=True)

    n = faults.count(create)
    assert n > 10, faults.calls
    for interrupt in (False, True):
        for k in range(1, n + 1):
            with leak_check(f"create hooks with call {k} of {n} "
                            f"{'interrupted' if interrupt else 'failed'}"):
                try:
                    # Armed around the whole create (a SIGINT recorded in
                    # the hooks may run only at its end).
                    with (faults.interrupt_at(k) if interrupt
                          else faults.fail_at(k, errno.EIO)):
                        create()
                except Interrupt:
                    assert interrupt
                except (OSError, pidsafe.Error) as exc:
                    assert not interrupt, f"call {k} ({faults.fired}): {exc!r}"
                assert pidsafe.Container.list(str(state_dir)) == []
                assert _cgroup_dirs(state_dir, "fh") == []
