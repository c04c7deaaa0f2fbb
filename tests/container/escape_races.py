"""The escape racers: a name in a rootfs swapped for a symlink to the host
while containers are created from it.

One module for the attack suite (tests/container/test_escapes.py runs each
race for a few seconds) and for the long hunt outside CI
(scripts/stress_escapes.py, thousands of rounds).  The racer is
``escape_probe swap`` (escape_probe.c): on the host it exchanges a name
with a symlink, tens of thousands of times a second, standing for another
container that shares the rootfs.

Each race runs creates until its rounds or its time are used up and
returns a :class:`Tally`: the rounds, how many creates the race made fail
(``refused``: the racer's symlink was where init made or checked
something, and init refused it), and every escape found, described (a
host file changed, a mount over a host directory, a masked path that is
not the null device).  A tally with no refusal proves nothing: the racer
never won a round.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import stat
import subprocess
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import pidsafe
from pidsafe import _sys

#: make_bundle(args, edit) -> a bundle directory with a fresh rootfs copy
#: (tests/bundles.py's fixture, or scripts/stress_escapes.py's own).
MakeBundle = Callable[..., pathlib.Path]

PROBE_SRC = pathlib.Path(__file__).with_name("escape_probe.c")
#: A procfs file runc's default config masks and this kernel has (kcore
#: needs CONFIG_PROC_KCORE).
MASKED_FILE = next((p for p in ("/proc/kcore", "/proc/timer_list", "/proc/keys")
                    if os.path.exists(p)), "/proc/keys")


class Tally:
    """What one race found (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rounds = 0
        self.refused = 0
        #: rounds after a bind followed the racer's symlink inside the root
        #: (made the symlink's target there: harmless, and a win of the racer)
        self.followed = 0
        self.escapes: List[str] = []
        #: errors a race does not explain (a refusal naming another field)
        self.unexpected: List[str] = []

    def __repr__(self) -> str:
        return (f"{self.name}: {self.rounds} rounds, {self.refused} refused, "
                f"{self.followed} followed inside the root, {len(self.escapes)} escapes, "
                f"{len(self.unexpected)} unexpected errors")


def build_probe(out_dir: pathlib.Path) -> Optional[pathlib.Path]:
    """escape_probe compiled static (it runs inside busybox containers too),
    or None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = out_dir / "escape_probe"
    subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-static", "-o", str(out), str(PROBE_SRC)],
                   check=True)
    return out


@contextlib.contextmanager
def racing(probe: pathlib.Path, directory: pathlib.Path, name: str,
           target: str) -> Iterator[None]:
    """``directory/name`` swapped with a symlink to ``target``, over and over."""
    with pidsafe.spawn([str(probe), "swap", str(directory), name, f".{name}.evil", target],
                       stdout=pidsafe.DEVNULL) as racer:
        try:
            yield
        finally:
            racer.kill()
            racer.wait()


def dev_in_rootfs(doc: Dict[str, Any]) -> None:
    """No tmpfs on /dev: the container's /dev is the rootfs's, which a second
    container sharing that rootfs (here: the racer) can write."""
    doc["mounts"] = [m for m in doc["mounts"] if m["destination"] != "/dev"]
    doc["linux"]["maskedPaths"] = ["/proc/acpi", MASKED_FILE, "/sys/firmware"]


def userns(doc: Dict[str, Any]) -> None:
    doc["linux"]["namespaces"].append({"type": "user"})
    m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    doc["linux"]["uidMappings"] = m
    doc["linux"]["gidMappings"] = m


def in_container(pid: int, path: str) -> os.stat_result:
    """``path`` as the container's processes see it: resolved in its root,
    from our side, through init's ``/proc/PID/root``."""
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _sys.openat2(root, path, os.O_PATH | os.O_CLOEXEC,
                          resolve=_sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(root)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def host_mount_points() -> List[str]:
    """The mount points of our mount namespace (the host's), unescaped."""
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    return [line.split()[4].replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\") for line in lines]


def _rounds(rounds: int, seconds: Optional[float]) -> Iterator[int]:
    deadline = None if seconds is None else time.monotonic() + seconds
    for i in range(rounds):
        if deadline is not None and i and time.monotonic() >= deadline:
            return
        yield i


def _create(tally: Tally, bundle: pathlib.Path, state_dir: pathlib.Path, cid: str,
            fields: tuple, **kwargs: Any) -> Optional[pidsafe.Container]:
    """One create under the race: the container, or None if refused."""
    tally.rounds += 1
    try:
        return pidsafe.Container.create(cid, bundle, state_dir=str(state_dir), **kwargs)
    except pidsafe.ContainerError as exc:
        if not exc.field.startswith(fields):
            tally.unexpected.append(f"round {tally.rounds}: {exc!r}")
        tally.refused += 1
        return None


def _delete(c: pidsafe.Container) -> None:
    try:
        c.delete(force=True)
    finally:
        c.close()


def device_chmod(probe: pathlib.Path, make_bundle: MakeBundle, state_dir: pathlib.Path,
                 tmp: pathlib.Path, rounds: int, seconds: Optional[float] = None) -> Tally:
    """Devices are made before pivot_root: a mode set by name
    (``fchmodat(dir, "null")``) follows a symlink swapped in after the
    mknod, resolved from the *host's* root, and makes a host file 0666.
    Escape: the host file's mode or contents changed."""
    tally = Tally("/dev/null swapped while devices are made")
    secret = tmp / "host-secret"
    secret.write_text("host only\n")
    secret.chmod(0o600)
    bundle = make_bundle(["true"], dev_in_rootfs)
    dev = bundle / "rootfs" / "dev"
    (dev / "null").touch()
    with racing(probe, dev, "null", str(secret)):
        for i in _rounds(rounds, seconds):
            c = _create(tally, bundle, state_dir, f"dev{i}",
                        ("linux.devices", "linux.maskedPaths"))
            if c is not None:
                _delete(c)
            mode = stat.S_IMODE(secret.stat().st_mode)
            if mode != 0o600:
                tally.escapes.append(f"round {tally.rounds}: the host file was chmodded "
                                     f"to {mode:o}")
                secret.chmod(0o600)
    if secret.read_text() != "host only\n":
        tally.escapes.append("the host file was written")
    return tally


def masked_null(probe: pathlib.Path, make_bundle: MakeBundle, state_dir: pathlib.Path,
                rounds: int, seconds: Optional[float] = None) -> Tally:
    """CVE-2025-31133.  A masked file gets a bind of /dev/null: looked up by
    name, a /dev/null swapped for a symlink to a procfs file makes the
    masked path a writable copy of that file (here the harmless,
    uts-namespaced kernel.domainname; core_pattern in the CVE).  Escape:
    a masked path that is not the null device."""
    tally = Tally("/dev/null swapped while paths are masked")
    bundle = make_bundle(["true"], dev_in_rootfs)
    dev = bundle / "rootfs" / "dev"
    (dev / "null").touch()
    with racing(probe, dev, "null", "/proc/sys/kernel/domainname"):
        for i in _rounds(rounds, seconds):
            c = _create(tally, bundle, state_dir, f"mask{i}",
                        ("linux.devices", "linux.maskedPaths"))
            if c is None:
                continue
            try:
                assert c.pid is not None
                st = in_container(c.pid, MASKED_FILE)
                if not (stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)):
                    tally.escapes.append(f"round {tally.rounds}: masked {MASKED_FILE} is "
                                         f"not the null device: {st}")
            finally:
                _delete(c)
    return tally


def console(probe: pathlib.Path, make_bundle: MakeBundle, state_dir: pathlib.Path,
            rounds: int, seconds: Optional[float] = None) -> Tally:
    """CVE-2025-52565.  With a terminal, the pty's peer is bound onto
    /dev/console: a /dev/console swapped for a symlink to a procfs file,
    followed, binds the pty over that file (here the harmless,
    uts-namespaced kernel.domainname; in the CVE a file whose bind defeats
    the read-only /proc/sys and the masks).  Escape: that file, as the
    container sees it, is not procfs's, or a mount is on it."""
    import socket

    tally = Tally("/dev/console swapped while the terminal is bound")
    target = "/proc/sys/kernel/domainname"

    def edit(doc: Dict[str, Any]) -> None:
        dev_in_rootfs(doc)
        doc["process"]["terminal"] = True

    bundle = make_bundle(["true"], edit)
    dev = bundle / "rootfs" / "dev"
    (dev / "console").touch()
    with racing(probe, dev, "console", target):
        for i in _rounds(rounds, seconds):
            ours, theirs = socket.socketpair()
            with ours, theirs:   # the master, sent to ``ours``, goes with it unread
                c = _create(tally, bundle, state_dir, f"con{i}", ("process.terminal",),
                            console_socket=ours)
            if c is None:
                continue
            try:
                assert c.pid is not None
                st = in_container(c.pid, target)
                proc = in_container(c.pid, "/proc")   # the container's procfs
                if st.st_dev != proc.st_dev or not stat.S_ISREG(st.st_mode):
                    tally.escapes.append(f"round {tally.rounds}: the container's {target} "
                                         f"is not procfs's: {st}")
                # (Not /dev/console's own: the racer goes on renaming it.)
                with open(f"/proc/{c.pid}/mountinfo") as f:
                    if any(line.split()[4] == target for line in f):
                        tally.escapes.append(f"round {tally.rounds}: a mount on {target}")
            finally:
                _delete(c)
    return tally


def mount_target(probe: pathlib.Path, make_bundle: MakeBundle, state_dir: pathlib.Path,
                 tmp: pathlib.Path, rounds: int, seconds: Optional[float] = None, *,
                 with_userns: bool = False, with_mountns: bool = True) -> Tally:
    """A mount's target is looked up inside the rootfs, which another
    container sharing it (the racer) can write: swapped for a symlink to a
    host directory after a check, a target resolved by name from the host
    mounts over that host directory (runc's CVE-2021-30465 class).
    Without a mount namespace init mounts in ours, where such a mount would
    be seen at once.  Escape: a mount point in our namespace that is (or is
    under) the host directory, or its canary file hidden or changed."""
    tally = Tally("mount target swapped during create"
                  + (", user namespace" if with_userns else "")
                  + ("" if with_mountns else ", no mount namespace"))
    canary_dir = tmp / "host-canary"
    canary_dir.mkdir()
    canary = canary_dir / "canary"
    canary.write_text("host only\n")
    data = tmp / "data"
    data.mkdir()
    (data / "payload").write_text("the bind's own\n")

    def edit(doc: Dict[str, Any]) -> None:
        if with_userns:
            userns(doc)
        if not with_mountns:
            doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"]
                                          if ns["type"] != "mount"]
            doc["mounts"] = []
            doc["linux"].pop("maskedPaths", None)
            doc["linux"].pop("readonlyPaths", None)
            doc["root"]["readonly"] = False
        doc["mounts"].append({"destination": "/mnt/target", "type": "bind",
                              "source": str(data), "options": ["rbind", "ro"]})

    bundle = make_bundle(["true"], edit)
    mnt = bundle / "rootfs" / "mnt"
    mnt.mkdir(exist_ok=True)
    (mnt / "target").mkdir()
    host = str(canary_dir)
    with racing(probe, mnt, "target", host):
        for i in _rounds(rounds, seconds):
            c = _create(tally, bundle, state_dir, f"mt{i}", ("mounts",))
            try:
                bad = [p for p in host_mount_points() if p == host or p.startswith(host + "/")]
                if bad:
                    tally.escapes.append(f"round {tally.rounds}: a mount over the host's {bad}")
                if os.listdir(canary_dir) != ["canary"]:
                    tally.escapes.append(f"round {tally.rounds}: the host directory "
                                         f"holds {os.listdir(canary_dir)}")
                elif canary.read_text() != "host only\n":
                    tally.escapes.append(f"round {tally.rounds}: the canary was changed")
            finally:
                if c is not None:
                    # One delete, never retried: it must always finish
                    # (without a mount namespace, init's mounts are in ours,
                    # and the racer moves names around them).
                    _delete(c)
            # Followed inside the root: the symlink's target made there
            # (once made, it stays: every later round counts).
            if (bundle / "rootfs" / host.lstrip("/")).exists():
                tally.followed += 1
    return tally
