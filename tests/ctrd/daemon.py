"""One private containerd: own root, state, sockets, config, log and mount namespace.

A :class:`Containerd` keeps every file under a fresh directory (in the
pytest worker's temp dir), runs under a supervisor that reaps its shims and
gives it a mount namespace of its own (supervisor.py, supervisor_main.py),
uses the config of config.py (CRI on), records its events (events.py), and
on :meth:`Containerd.close` leaves nothing behind: no containerd, shim,
mount, container cgroup, shim socket in /run/containerd/s or directory.

A :class:`Runtime` names a shim for ``ctr run`` (``runtime.ctr_args(daemon)``):
:data:`RUNC` is containerd's runc shim driving runc, :data:`PIDSAFE` is
pidsafe's shim, by its path in .venv/bin.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Set, Tuple

import pytest

import session_owned

from . import config as ctrd_config
from .events import EventLog, EventView
from .supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
#: containerd's PATH: shims (containerd-shim-runc-v2, containerd-shim-pidsafe-v1) and runc.
DAEMON_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_IMAGE = "localhost/pidsafe-busybox:latest"
#: The CRI sandbox image (``sandbox_image``): pause.c, built by the ``cri_daemon`` fixture.
PAUSE_IMAGE = "localhost/pidsafe-pause:1"
CRI_NAMESPACE = "k8s.io"
SHIM_SOCKET_DIR = "/run/containerd/s"   # hard-wired in containerd 1.6


def skip_reason() -> Optional[str]:
    """Why the containerd tests cannot run here, or None."""
    missing = [n for n in ("containerd", "ctr", "runc") if shutil.which(n, path=DAEMON_PATH) is None]
    if missing:
        return (f"needs Debian's containerd and runc (missing: {' '.join(missing)}); "
                "scripts/bootstrap.sh installs them as root")
    return None


class Runtime(NamedTuple):
    """A runtime v2 shim driven through containerd.

    ``name``: the test id (and the CRI handler of that name).  ``shim``: what
    ``ctr --runtime`` takes: a runtime name (``io.containerd.runc.v2``, its
    binary found on containerd's PATH) or the absolute path of a shim.
    ``runc_root``: the runc shim; its runc state goes into the daemon's
    directory instead of /run/containerd/runc.
    """
    name: str
    shim: str
    runc_root: bool = False

    def skip_reason(self) -> Optional[str]:
        if self.shim.startswith("/") and not os.access(self.shim, os.X_OK):
            return f"no {self.name} shim at {self.shim}"
        return None

    def ctr_args(self, daemon: "Containerd") -> List[str]:
        """The options of ``ctr run`` that select this runtime."""
        args = ["--runtime", self.shim]
        if self.runc_root:
            args += ["--runc-root", daemon.runc_root]
        return args


RUNC = Runtime("runc", "io.containerd.runc.v2", runc_root=True)
PIDSAFE = Runtime("pidsafe", str(VENV_BIN / "containerd-shim-pidsafe-v1"))


class CtrResult(NamedTuple):
    argv: List[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self, returncode: int = 0) -> "CtrResult":
        """This result, or AssertionError with the output if it exited otherwise."""
        if self.returncode != returncode:
            raise AssertionError(f"{' '.join(self.argv[3:])!r} exited {self.returncode} "
                                 f"(want {returncode})\nstdout: {self.stdout!r}\n"
                                 f"stderr: {self.stderr!r}")
        return self


def _load_oci_image() -> Any:
    spec = importlib.util.spec_from_file_location("oci_image", REPO / "scripts" / "oci_image.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cgroup_mounts() -> List[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted({line.split()[4] for line in f
                       if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")})


class Containerd:
    """One private containerd (see the module docstring)."""

    def __init__(self, parent: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ctrd-", dir=parent))
        tag = secrets.token_hex(4)
        #: ctr's namespace; also the cgroup parent of every container (``/<namespace>``).
        self.namespace = f"pidsafe-{tag}"
        self.cgroup_parent = "/" + self.namespace
        self.address = str(self.dir / "c.sock")
        self.ttrpc_address = self.address + ".ttrpc"
        if len(self.ttrpc_address) > 100:
            raise RuntimeError(f"{self.ttrpc_address}: too long for a unix socket "
                               "(give pytest a shorter --basetemp)")
        self.runc_root = str(self.dir / "runc")
        self.log_path = self.dir / "containerd.log"
        self.image = BUSYBOX_IMAGE
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERD_")}
        self.env["PATH"] = DAEMON_PATH
        # containerd mounts snapshots for a moment while it unpacks an image
        # (mount.WithTempMount), in a directory made in $XDG_RUNTIME_DIR or
        # $TMPDIR: here, so that they come and go under this session's temp
        # root, which the other workers' leak checks leave alone, never as
        # /tmp/containerd-mount* in the middle of another test's check.
        tmp = self.dir / "tmp"
        tmp.mkdir()
        self.env["TMPDIR"] = str(tmp)
        self.env.pop("XDG_RUNTIME_DIR", None)
        self._images: Set[Tuple[str, str]] = set()   # (namespace, tar) imported
        self._busybox: Optional[Path] = None          # its image archive, once built
        self._supervisor: Optional[Supervisor] = None
        self.event_log = EventLog(self.ctr_argv(namespace=""), str(self.dir / "events.err"))

    # -- ctr ----------------------------------------------------------------

    def ctr_argv(self, *args: str, namespace: Optional[str] = None) -> List[str]:
        """``ctr`` with this daemon's address and ``namespace`` (ours by default)."""
        ns = self.namespace if namespace is None else namespace
        return ["ctr", "--address", self.address, *(["--namespace", ns] if ns else []), *args]

    def ctr(self, *args: str, namespace: Optional[str] = None, timeout: float = 60,
            input: Optional[str] = None) -> CtrResult:
        """Run ``ctr ARGS``: its exit code, stdout and stderr; AssertionError on timeout."""
        argv = self.ctr_argv(*args, namespace=namespace)
        try:
            p = subprocess.run(argv, input=input, capture_output=True, encoding="utf-8",
                               errors="replace", timeout=timeout, env=self.env,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{' '.join(argv)!r} timed out after {timeout} s; "
                                 f"stdout {e.stdout!r} stderr {e.stderr!r}") from None
        return CtrResult(argv, p.returncode, p.stdout, p.stderr)

    def ctr_handshake(self, *args: str, stdout: str, stderr: str = "",
                      namespace: Optional[str] = None, timeout: float = 60) -> CtrResult:
        """``ctr ARGS`` for a process that prints, then reads its stdin, then exits.

        ctr 1.6 can lose the output of a process that exits at once: when
        the process ends, ctr's Delete cancels its stdio fifos, and a fifo
        whose open(2) ctr's goroutine has not yet been seen to return is
        closed unread (containerd v1.6.20 process.go:224-227, task.go:324,
        vendor/github.com/containerd/fifo/fifo.go:111-121); on a loaded
        machine that happens.  So the process waits: this reads ``stdout``
        and ``stderr`` (exactly those texts) from ctr first, and only then
        closes ctr's stdin, which the process reads to EOF
        (``sh -c 'echo hi; read _; exit 3'``).  Its exit code and all output.
        """
        argv = self.ctr_argv(*args, namespace=namespace)
        deadline = time.monotonic() + timeout
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.env) as proc:
            assert proc.stdin and proc.stdout and proc.stderr
            out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
            want = {out_fd: stdout.encode(), err_fd: stderr.encode()}
            got = {fd: b"" for fd in want}
            try:
                while any(len(got[fd]) < len(want[fd]) for fd in want):
                    pending = [fd for fd in want if len(got[fd]) < len(want[fd])]
                    left = deadline - time.monotonic()
                    ready = select.select(pending, [], [], max(0.0, left))[0]
                    if not ready:
                        raise AssertionError(f"{' '.join(argv)!r}: no {stdout!r}/{stderr!r} "
                                             f"in {timeout} s, got {got}")
                    for fd in ready:
                        chunk = os.read(fd, len(want[fd]) - len(got[fd]))
                        if not chunk:
                            raise AssertionError(f"{' '.join(argv)!r}: EOF before "
                                                 f"{want[fd]!r}, got {got[fd]!r}")
                        got[fd] += chunk
                # communicate() closes stdin first: the process reads EOF and exits
                out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except BaseException:
                proc.kill()
                raise
        return CtrResult(argv, proc.returncode, (got[out_fd] + out).decode(errors="replace"),
                         (got[err_fd] + err).decode(errors="replace"))

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Write the config, start containerd (under its supervisor), wait until it serves."""
        for d in ("cni/bin", "cni/conf"):
            (self.dir / d).mkdir(parents=True)
        config = self.dir / "config.toml"
        config.write_text(ctrd_config.render(
            directory=str(self.dir), address=self.address, ttrpc_address=self.ttrpc_address,
            runc_root=self.runc_root, sandbox_image=PAUSE_IMAGE))
        self._supervisor = Supervisor(
            [shutil.which("containerd", path=DAEMON_PATH) or "containerd", "--config", str(config)],
            log_path=str(self.log_path), env=self.env, cwd=str(self.dir))
        self._start_daemon(timeout)
        self.ctr("namespaces", "create", self.namespace).check()
        self.event_log.connect(self._sync)

    def _start_daemon(self, timeout: float) -> None:
        assert self._supervisor is not None
        self._supervisor.start_containerd()
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(self.address)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"containerd did not come up within {timeout} s:\n"
                                             + self.log_since(0)[-4000:]) from None
            time.sleep(0.01)
        self.ctr("version", timeout=timeout).check()

    def _sync(self, n: int) -> None:
        self.ctr("namespaces", "label", self.namespace, f"pidsafe.sync={n}").check()

    def restart(self, timeout: float = 60) -> None:
        """Stop containerd (SIGTERM) and start it again; shims and containers live on."""
        assert self._supervisor is not None
        self.event_log.close()
        self._supervisor.stop_containerd(timeout)
        self._start_daemon(timeout)
        self.event_log.connect(self._sync)

    @property
    def pid(self) -> Optional[int]:
        """containerd's pid (None while stopped)."""
        return self._supervisor.containerd if self._supervisor else None

    # -- images -------------------------------------------------------------

    def import_image(self, tar: Path, namespace: Optional[str] = None) -> None:
        """``ctr images import`` (unpacked), once per namespace and archive."""
        ns = self.namespace if namespace is None else namespace
        if (ns, str(tar)) not in self._images:
            self.ctr("images", "import", str(tar), namespace=ns, timeout=120).check()
            self._images.add((ns, str(tar)))

    def build_image(self, rootfs: Path, name: str, **config: Any) -> Path:
        """An OCI archive of ``rootfs`` named ``name`` (scripts/oci_image.py), in our dir.

        ``config``: scripts/oci_image.py's ``build`` options (``entrypoint``, ``cmd``).
        """
        tar = self.dir / (name.rsplit("/", 1)[-1].replace(":", "_") + ".tar")
        _load_oci_image().build(str(rootfs), str(tar), name, **config)
        return tar

    def import_busybox(self, namespace: Optional[str] = None) -> None:
        """Import :data:`BUSYBOX_IMAGE` (a static busybox) into ``namespace``."""
        if self._busybox is None:
            from bundles import BUSYBOX, build_busybox_rootfs
            if BUSYBOX is None:
                pytest.skip("needs a static busybox (Debian's busybox-static)")
            rootfs = build_busybox_rootfs(self.dir / "busybox-rootfs", BUSYBOX)
            self._busybox = self.build_image(rootfs, BUSYBOX_IMAGE)
            shutil.rmtree(rootfs)
        self.import_image(self._busybox, namespace)

    # -- what the tests look at ----------------------------------------------

    def events(self, namespace: Optional[str] = "") -> EventView:
        """The events from now on, of ``namespace`` (ours by default; None: all)."""
        return self.event_log.view(self.namespace if namespace == "" else namespace)

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def shim_pids(self) -> List[int]:
        """The live shims (and their orphans): the supervisor's children but containerd."""
        return self._supervisor.orphans() if self._supervisor else []

    def mounts(self) -> List[str]:
        """Mount points under our directory, in the daemon's mount namespace."""
        if self._supervisor is None:
            return []
        prefix = str(self.dir) + "/"
        return sorted(m for m in self._supervisor.mount_points() if m.startswith(prefix))

    def cgroups(self) -> List[str]:
        """Container cgroups left under our cgroup parent, in every hierarchy."""
        left = []
        for mnt in _cgroup_mounts():
            top = mnt + self.cgroup_parent
            for path, dirs, _ in os.walk(top):
                left += [os.path.join(path, d) for d in dirs]
        return sorted(left)

    def shim_sockets(self) -> List[str]:
        """The shim sockets of every container this daemon ever made that still exist."""
        created = {(e.namespace, e.get("id")) for e in self.event_log.events
                   if e.topic == "/containers/create"}
        paths = [f"{SHIM_SOCKET_DIR}/"
                 + hashlib.sha256(f"{self.address}/{ns}/{cid}".encode()).hexdigest()
                 for ns, cid in created]
        return sorted(p for p in paths if os.path.lexists(p))

    def leftovers(self) -> List[str]:
        """Containers and active snapshots, in every namespace, as messages."""
        left = []
        for ns in self.ctr("namespaces", "ls", "-q").check().stdout.split():
            left += [f"container {ns}/{c}"
                     for c in self.ctr("containers", "ls", "-q", namespace=ns).stdout.split()]
            for line in self.ctr("snapshots", "ls", namespace=ns).stdout.splitlines()[1:]:
                fields = line.split()
                if fields and fields[-1] == "Active":
                    left.append(f"active snapshot {ns}/{fields[0]}")
        return left

    def clean(self) -> None:
        """Kill and delete every task, container and active snapshot, in every namespace."""
        for ns in self.ctr("namespaces", "ls", "-q").stdout.split():
            for task in self.ctr("tasks", "ls", "-q", namespace=ns).stdout.split():
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, namespace=ns)
                self.ctr("tasks", "rm", "-f", task, namespace=ns)
            for c in self.ctr("containers", "ls", "-q", namespace=ns).stdout.split():
                self.ctr("containers", "rm", c, namespace=ns)
            for line in self.ctr("snapshots", "ls", namespace=ns).stdout.splitlines()[1:]:
                fields = line.split()
                if fields and fields[-1] == "Active":
                    self.ctr("snapshots", "rm", fields[0], namespace=ns)

    def wait_settled(self, timeout: float = 10) -> List[str]:
        """Wait for exiting shims and their mounts to go; what is still there, as messages."""
        deadline = time.monotonic() + timeout
        while True:
            left = ([f"shim pid {p}: {_cmdline(p)}" for p in self.shim_pids()]
                    + [f"mount {m}" for m in self.mounts()]
                    + [f"cgroup {c}" for c in self.cgroups()])
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.02)

    def close(self) -> List[str]:
        """Stop everything and remove every trace; what had been left, as messages."""
        problems: List[str] = []
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            try:
                if supervisor.containerd is not None:
                    self._supervisor = supervisor   # for leftovers(), clean(), wait_settled()
                    left = self.leftovers()
                    if left:
                        problems += left
                        self.clean()
                    problems += self.wait_settled()
            except (AssertionError, OSError) as e:   # a broken daemon: say so, go on
                problems.append(f"cannot list what is left: {e}")
            finally:
                self._supervisor = None
                self.event_log.close()
                problems += [f"at exit: {line}" for line in supervisor.exit()]
        for pid in _processes_with_arg("-address", self.address):
            problems.append(f"shim outside the supervisor: pid {pid} {_cmdline(pid)}")
            _kill(pid)
        for path in self.shim_sockets():
            problems.append(f"shim socket left: {path}")
            os.unlink(path)
        for cg in self.cgroups():
            problems.append(f"cgroup left: {cg}")
        for mnt in _cgroup_mounts():   # the parents themselves, children first
            for path, _, _ in sorted(os.walk(mnt + self.cgroup_parent), reverse=True):
                try:
                    os.rmdir(path)
                except OSError as e:
                    problems.append(f"cannot remove cgroup {path}: {e}")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():
            problems.append(f"cannot remove {self.dir}")
        return problems


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def _processes_with_arg(flag: str, value: str) -> List[int]:
    """Pids whose argv has ``flag`` directly followed by ``value`` (a shim's ``-address``)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a == flag.encode() and b == value.encode() for a, b in zip(argv, argv[1:])):
            pids.append(int(name))
    return pids


def _kill(pid: int) -> None:
    """SIGKILL a process that is not our child, through a pidfd (no pid reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)
