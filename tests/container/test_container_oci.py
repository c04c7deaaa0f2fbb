"""Container behaviours the OCI runtime-tools validation suite checks (root).

Each test here failed before the fix it names; the suite itself is run by
scripts/conformance.sh, not from CI.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
from typing import Any, Dict, List, Set

import pytest

import pidsafe
from pidsafe import PIPE

pytestmark = pytest.mark.root


def _run(make_bundle: Any, state_dir: pathlib.Path, script: str,
         edit: Any = lambda d: None) -> str:
    """Create, start and wait for ``sh -c script``; its stdout."""
    c = pidsafe.Container.create("oci", make_bundle(["sh", "-c", script], edit),
                                 state_dir=str(state_dir), stdout=PIPE)
    try:
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None
        out = proc.stdout.read()
        assert c.wait(timeout=10) == 0, out
        return out.decode()
    finally:
        c.delete(force=True)


def _root_mount_fields(mountinfo: str) -> List[str]:
    """The optional fields (shared:N, master:N, unbindable) of the mount at /."""
    found = [line.partition(" - ")[0].split()[6:] for line in mountinfo.splitlines()
             if line.split()[4] == "/"]
    assert len(found) == 1, mountinfo
    return found[0]


def _host_peer_groups() -> Set[str]:
    with open("/proc/self/mountinfo") as f:
        return {field for line in f for field in line.partition(" - ")[0].split()[6:]
                if field.startswith("shared:")}


@pytest.mark.parametrize("mode", ["shared", "rshared"])
def test_rootfs_propagation_shared_is_applied_to_the_new_root(
        make_bundle: Any, state_dir: pathlib.Path, mode: str) -> None:
    """pivot_root refuses a shared new root (EINVAL): the propagation is applied
    after it, to the container's /, in a peer group of its own."""
    def edit(doc: Dict[str, Any]) -> None:
        doc["linux"]["rootfsPropagation"] = mode

    fields = _root_mount_fields(_run(make_bundle, state_dir, "cat /proc/self/mountinfo", edit))
    shared = [f for f in fields if f.startswith("shared:")]
    assert shared, fields
    assert not set(shared) & _host_peer_groups()   # never a peer of a host mount


@pytest.mark.parametrize("mode", ["unbindable", "runbindable"])
def test_rootfs_propagation_unbindable(make_bundle: Any, state_dir: pathlib.Path,
                                       mode: str) -> None:
    """An unbindable host / made the bind of the rootfs onto itself fail."""
    def edit(doc: Dict[str, Any]) -> None:
        doc["linux"]["rootfsPropagation"] = mode

    assert "unbindable" in _root_mount_fields(
        _run(make_bundle, state_dir, "cat /proc/self/mountinfo", edit))


@pytest.mark.parametrize("mode", ["slave", "private", None])
def test_rootfs_propagation_never_shares_with_the_host(make_bundle: Any,
                                                       state_dir: pathlib.Path,
                                                       mode: Any) -> None:
    def edit(doc: Dict[str, Any]) -> None:
        if mode is not None:
            doc["linux"]["rootfsPropagation"] = mode

    fields = _root_mount_fields(_run(make_bundle, state_dir, "cat /proc/self/mountinfo", edit))
    assert not [f for f in fields if f.startswith("shared:")]
    if mode == "private":
        assert fields == []


def test_filesystem_options_on_a_bind_are_ignored_as_runc_does(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """runc and crun pass options to mount(2), which ignores the data of a
    bind: configs (the suite's `mounts` test) put tmpfs options on binds."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello").write_text("hi\n")

    def edit(doc: Dict[str, Any]) -> None:
        for i, (opt, dest) in enumerate((("bind", "/mnt/b"), ("rbind", "/mnt/r"))):
            doc["mounts"].append({"destination": dest, "source": str(src), "options": [
                "nosuid", "strictatime", "mode=755", "size=1k", opt, "rprivate"]})

    out = _run(make_bundle, state_dir, "cat /mnt/b/hello /mnt/r/hello; "
               "grep -E ' /mnt/(b|r) ' /proc/self/mountinfo", edit)
    lines = out.splitlines()
    assert lines[:2] == ["hi", "hi"]
    assert len(lines) == 4 and all("nosuid" in ln.split()[5] for ln in lines[2:]), lines


def test_filesystem_options_on_a_bind_are_still_refused_by_the_mount_layer() -> None:
    from pidsafe.mount._spec import Mount, plan

    with pytest.raises(pidsafe.InvalidMountError, match="does not apply to a bind"):
        plan(0, Mount("bind", "/etc", "/x", ("bind", "size=1k")), False)
    p = plan(0, Mount("bind", "/etc", "/x", ("bind", "size=1k", "ro")), False,
             bind_ignores_fs_options=True)
    assert p.ignored == ["size=1k"] and p.attr_set


def _userns(doc: Dict[str, Any]) -> None:
    doc["linux"]["namespaces"].append({"type": "user"})
    m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    doc["linux"]["uidMappings"] = m
    doc["linux"]["gidMappings"] = m


@pytest.mark.parametrize("userns", [False, True], ids=["host-user", "userns"])
def test_join_a_pid_namespace_by_path(make_bundle: Any, state_dir: pathlib.Path,
                                      userns: bool) -> None:
    """init is forked into the namespace by pidsafe-init (cloned in ours): it is
    not that namespace's pid 1, it sees the processes already there, and it
    is ours, held by its pidfd."""
    holder = pidsafe.Container.create("holder", make_bundle(["sleep", "1000"]),
                                      state_dir=str(state_dir))
    try:
        holder.start()
        assert holder.pid is not None
        ns_path = f"/proc/{holder.pid}/ns/pid"

        def edit(doc: Dict[str, Any]) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "pid":
                    ns["path"] = ns_path
            if userns:
                _userns(doc)

        c = pidsafe.Container.create("joiner", make_bundle(
            ["sh", "-c", "echo $$; cat /proc/1/comm 2>&1"], edit), state_dir=str(state_dir),
            stdout=PIPE)
        try:
            assert c.pid is not None
            assert os.readlink(f"/proc/{c.pid}/ns/pid") == os.readlink(ns_path)
            with open(f"/proc/{c.pid}/status") as f:   # ours (CLONE_PARENT), not dumpable
                status = dict(line.split(":", 1) for line in f)
            assert int(status["PPid"]) == os.getpid()
            assert os.readlink(f"/proc/{c.pid}/exe").startswith("/memfd:pidsafe:pidsafe-init")
            c.start()
            proc = c.process()
            assert proc is not None and proc.stdout is not None
            out = proc.stdout.read().decode().split()
            assert c.wait(timeout=10) == 0
            assert int(out[0]) > 1
            if not userns:   # in a user namespace /proc is the pid namespace's all the same
                assert out[1] == "sleep"
            # our own thread went back to our pid namespace for its children
            assert os.readlink("/proc/thread-self/ns/pid_for_children") == \
                os.readlink("/proc/self/ns/pid")
        finally:
            c.delete(force=True)
    finally:
        holder.delete(force=True)


@pytest.mark.parametrize("kind,path,says", [
    ("pid", "/proc/self/ns/net", "is a network namespace"),
    ("network", "/proc/self/ns/pid", "is a pid namespace"),
    ("ipc", "/etc/hostname", "is not a namespace file"),
])
def test_a_namespace_path_of_the_wrong_kind_is_refused_and_leaves_nothing(
        make_bundle: Any, state_dir: pathlib.Path, kind: str, path: str, says: str) -> None:
    def edit(doc: Dict[str, Any]) -> None:
        for ns in doc["linux"]["namespaces"]:
            if ns["type"] == kind:
                ns["path"] = path

    bundle = make_bundle(["true"], edit)
    with pytest.raises(pidsafe.ContainerError, match=says) as info:
        pidsafe.Container.create("wrong", bundle, state_dir=str(state_dir))
    assert info.value.errno == errno.EINVAL
    assert info.value.field.startswith("linux.namespaces[") and info.value.field.endswith(
        "].path")
    assert pidsafe.Container.list(str(state_dir)) == []


def test_the_namespace_of_a_process_that_exited_is_refused_naming_it(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """/proc/PID/ns/ipc of a process that has exited: a ContainerError (and still a
    FileNotFoundError) naming the step, the path and the field, not a bare
    "No such file or directory"; nothing is left."""
    with pidsafe.spawn(["true"]) as gone:
        path = f"/proc/{gone.pid}/ns/ipc"
        gone.wait()   # reaped: its /proc entry is gone, while we hold its pidfd

        def edit(doc: Dict[str, Any]) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "ipc":
                    ns["path"] = path

        bundle = make_bundle(["true"], edit)
        with pytest.raises(pidsafe.ContainerError) as info:
            pidsafe.Container.create("gone", bundle, state_dir=str(state_dir))
    assert isinstance(info.value, FileNotFoundError)
    assert (info.value.errno, info.value.filename) == (errno.ENOENT, path)
    assert info.value.strerror.startswith("join ipc namespace (linux.namespaces["), info.value
    assert pidsafe.Container.list(str(state_dir)) == []


@pytest.mark.parametrize("bind", ["bind", "rbind"])
def test_mounts_are_listed_in_config_order(make_bundle: Any, state_dir: pathlib.Path,
                                           tmp_path: pathlib.Path, bind: str) -> None:
    """Binds are cloned by the creator before init mounts anything, and Linux
    6.8+ lists mounts by id: init clones each again where it belongs."""
    src = tmp_path / "src"
    src.mkdir()

    def edit(doc: Dict[str, Any]) -> None:
        doc["mounts"] += [
            {"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/mnt/b", "source": str(src), "options": [bind, "ro", "rprivate"]},
            {"destination": "/mnt/c", "type": "tmpfs", "source": "tmpfs"}]

    out = _run(make_bundle, state_dir, "cat /proc/self/mountinfo", edit)
    points = [line.split()[4] for line in out.splitlines()]
    assert [p for p in points if p.startswith("/mnt/")] == ["/mnt/a", "/mnt/b", "/mnt/c"]
    b = next(line for line in out.splitlines() if line.split()[4] == "/mnt/b")
    assert "ro" in b.split()[5].split(",")   # the clone kept the creator's attributes


def test_mounts_are_listed_depth_first_in_the_order_they_were_made(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """init clones the whole root once every mount is made: the kernel lists
    the clones in tree order, a mount's submounts right after it, siblings
    in config order.  (runc lists them in config order: /mnt/b before
    /mnt/a/x here.)"""
    src = tmp_path / "src"
    src.mkdir()

    def edit(doc: Dict[str, Any]) -> None:
        doc["mounts"] += [
            {"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/mnt/b", "source": str(src), "options": ["rbind"]},
            {"destination": "/mnt/a/x", "source": str(src), "options": ["bind", "ro"]}]

    out = _run(make_bundle, state_dir, "cat /proc/self/mountinfo", edit)
    points = [line.split()[4] for line in out.splitlines()]
    assert [p for p in points if p.startswith("/mnt/")] == ["/mnt/a", "/mnt/a/x", "/mnt/b"]
    assert len(points) == len(set(points)), out   # each mount once: the first tree is gone


@pytest.mark.parametrize("option", ["unbindable", "runbindable"])
def test_an_unbindable_bind_is_mounted_and_listed_in_config_order(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path,
        option: str) -> None:
    """An unbindable mount cannot be cloned, so init clones each bind again
    where it attaches it instead of cloning the root."""
    src = tmp_path / "src"
    src.mkdir()

    def edit(doc: Dict[str, Any]) -> None:
        doc["mounts"] += [
            {"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/mnt/b", "source": str(src), "options": ["rbind", option]},
            {"destination": "/mnt/c", "type": "tmpfs", "source": "tmpfs"}]

    out = _run(make_bundle, state_dir, "cat /proc/self/mountinfo", edit)
    lines = out.splitlines()
    points = [line.split()[4] for line in lines]
    assert [p for p in points if p.startswith("/mnt/")] == ["/mnt/a", "/mnt/b", "/mnt/c"]
    b = next(line for line in lines if line.split()[4] == "/mnt/b")
    assert "unbindable" in b.partition(" - ")[0].split()[6:], b


@pytest.mark.parametrize("bind", ["bind", "rbind"])
def test_mounts_under_a_bind_of_a_shared_host_mount_do_not_reach_the_host(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path, bind: str) -> None:
    """A detached clone of a shared mount is a peer of it (in its own
    namespace); init's second clone of each bind must not make the
    container's bind a peer of the host's either: it stays a slave."""
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "shared-src", str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        (src / "inner").mkdir()

        def edit(doc: Dict[str, Any]) -> None:
            doc["mounts"].append({"destination": "/mnt/s", "source": str(src),
                                  "options": [bind]})
            for caps in doc["process"]["capabilities"].values():
                caps.append("CAP_SYS_ADMIN")

        out = _run(make_bundle, state_dir, "mount -t tmpfs inner /mnt/s/inner && "
                   "grep ' /mnt/s ' /proc/self/mountinfo", edit)
        with open("/proc/self/mountinfo") as f:
            host = [line.split()[4] for line in f]
        assert str(src / "inner") not in host
        assert "master:" in out.partition(" - ")[0]   # host mounts still propagate in
    finally:
        subprocess.run(["umount", "-R", str(src)], check=True)


def _no_namespaces(doc: Dict[str, Any]) -> None:
    doc["linux"]["namespaces"] = []
    doc.pop("hostname", None)
    doc["root"]["readonly"] = False


def _mounts_under(path: pathlib.Path) -> List[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4].startswith(str(path) + "/")]


def test_no_mount_namespace_shares_ours_and_delete_unmounts_what_init_made(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """runtime-spec: without a namespace entry the container inherits the
    runtime's namespace. init chroots (pivot_root would move everyone's root);
    its mounts are made in our namespace, and delete undoes them (runc and
    crun leave them behind)."""
    bundle = make_bundle(["sh", "-c", "readlink /proc/self/ns/mnt; cat /marker; "
                          "cat /proc/kcore | wc -c; cat >/dev/null"], _no_namespaces)
    (bundle / "rootfs/marker").write_text("in the rootfs\n")
    c = pidsafe.Container.create("shared", bundle, state_dir=str(state_dir), stdin=PIPE,
                                 stdout=PIPE)
    try:
        assert c.pid is not None
        assert os.readlink(f"/proc/{c.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
        made = _mounts_under(bundle / "rootfs")
        assert str(bundle / "rootfs/proc") in made and str(bundle / "rootfs/dev") in made
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().decode().strip() == os.readlink("/proc/self/ns/mnt")
        assert proc.stdout.readline() == b"in the rootfs\n"
        assert proc.stdout.readline() == b"0\n"   # masked: /dev/null over /proc/kcore
        with c.exec(["cat", "/marker"], exec_id="x", stdout=PIPE) as e:
            assert e.stdout is not None
            assert e.stdout.read() == b"in the rootfs\n"   # the exec is chrooted too
            assert e.wait(timeout=10) == 0
        proc.stdin.close()
        assert c.wait(timeout=10) == 0
    finally:
        c.delete(force=True)
    assert _mounts_under(bundle / "rootfs") == []


def test_no_mount_namespace_a_failing_create_leaves_no_mount(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    def edit(doc: Dict[str, Any]) -> None:
        _no_namespaces(doc)
        doc["mounts"].append({"destination": "/late", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=not-a-size"]})

    bundle = make_bundle(["true"], edit)
    with pytest.raises(pidsafe.ContainerError) as info:
        pidsafe.Container.create("shared", bundle, state_dir=str(state_dir))
    assert info.value.field == f"mounts[{len(json_mounts(bundle)) - 1}]"
    assert _mounts_under(bundle / "rootfs") == []
    assert pidsafe.Container.list(str(state_dir)) == []


def json_mounts(bundle: pathlib.Path) -> List[Any]:
    import json

    return list(json.loads((bundle / "config.json").read_text())["mounts"])


@pytest.mark.parametrize("field,edit", [
    ("linux.rootfsPropagation", lambda d: d["linux"].update(rootfsPropagation="shared")),
    ("root.readonly", lambda d: d["root"].update(readonly=True)),
    ("linux.namespaces", lambda d: (d["linux"]["namespaces"].append({"type": "user"}),
                                    d["linux"].update(uidMappings=[{"containerID": 0,
                                    "hostID": 100000, "size": 65536}], gidMappings=[
                                        {"containerID": 0, "hostID": 100000,
                                         "size": 65536}]))),
])
def test_no_mount_namespace_refuses_what_would_change_ours(
        make_bundle: Any, state_dir: pathlib.Path, field: str, edit: Any) -> None:
    def both(doc: Dict[str, Any]) -> None:
        _no_namespaces(doc)
        edit(doc)

    bundle = make_bundle(["true"], both)
    with pytest.raises(pidsafe.ConfigError) as info:
        pidsafe.Container.create("shared", bundle, state_dir=str(state_dir))
    assert info.value.json_path == field and "mount namespace of its own" in str(info.value)
    assert _mounts_under(bundle / "rootfs") == []
    assert pidsafe.Container.list(str(state_dir)) == []
