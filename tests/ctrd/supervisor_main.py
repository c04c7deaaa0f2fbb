"""supervisor_main.py: the parent of a test containerd (tests/ctrd/supervisor.py runs it).

    python -S supervisor_main.py CONTAINERD-ARGV...

A containerd's shims daemonize: ``start`` forks the shim daemon and exits, so
the daemon is orphaned at once, and this machine's PID 1 does not reap
orphans.  This process is their subreaper, so every shim that exits is
reaped here, and one that is still alive when the tests end is found and
killed here.  It also gives containerd, its shims and their containers a
private mount namespace (propagation private): their mounts never show in
the test process's mount table, nor in other pytest sessions', and whatever
is still mounted when the last of them exits goes away with the namespace.

Commands, one a line on stdin; each answers one line on stdout:

    start          run containerd (once it is not running) -> "started PID"
    stop SECONDS   SIGTERM containerd, SIGKILL after SECONDS -> "stopped STATUS"
                   (its shims live on, as with a real containerd restart)
    exit           stop containerd, then SIGKILL every child left (shims, their
                   orphans) -> "left PID CMDLINE" for each, then "bye"

EOF on stdin (the test process died) is "exit".  Stdlib only; the test
process's end is tests/ctrd/supervisor.py.
"""


from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import sys
import time
from typing import Dict, List, Optional

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class Supervisor:
    def __init__(self, argv: List[str]) -> None:
        self.argv = argv
        self.containerd: Optional[int] = None
        self.status: Dict[int, int] = {}   # reaped pid -> wait status (containerd only)
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def reap(self) -> None:
        """Reap every child that has exited: containerd, shims, orphans."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.containerd:
                self.status[pid] = status
                self.containerd = None

    def wait_for(self, pid: int, timeout: float) -> bool:
        """Reap until ``pid`` is reaped or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while pid not in self.status:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self.rfd], [], [], left)
            self._drain_wakeups()
            self.reap()
        return True

    def _drain_wakeups(self) -> None:
        try:
            os.read(self.rfd, 4096)
        except BlockingIOError:
            pass

    def start(self) -> str:
        if self.containerd is not None:
            return f"started {self.containerd}"
        # containerd's stdout and stderr go to our stderr (the test process pointed it at the
        # log); its stdin is /dev/null, not our command pipe.
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(self.argv[0], self.argv, os.environ, setsid=True,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                               (os.POSIX_SPAWN_DUP2, 2, 1)])
        finally:
            os.close(null)
        self.containerd = pid
        return f"started {pid}"

    def stop(self, timeout: float) -> str:
        pid = self.containerd
        if pid is None:
            return "stopped none"
        os.kill(pid, signal.SIGTERM)   # our unreaped child: the pid cannot be reused
        if not self.wait_for(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            self.wait_for(pid, 30)
        return f"stopped {self.status.pop(pid, -1)}"

    def children(self) -> List[int]:
        kids: List[int] = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    kids += [int(p) for p in f.read().split()]
            except FileNotFoundError:
                continue
        return kids

    def exit(self) -> List[str]:
        """Stop containerd, kill and reap every child left; what was left, as lines."""
        lines = []
        if self.containerd is not None:
            lines.append(self.stop(10))
        for _ in range(100):   # killed shims may leave orphans of their own: repeat
            self.reap()
            kids = self.children()
            if not kids:
                break
            for pid in kids:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    cmd = "?"
                if cmd:   # a zombie has none: it only needs reaping
                    lines.append(f"left {pid} {cmd}")
                try:
                    os.kill(pid, signal.SIGKILL)   # our unreaped child: not reusable
                except ProcessLookupError:
                    pass
            select.select([self.rfd], [], [], 0.1)
            self._drain_wakeups()
        return lines


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__.splitlines()[2])
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    sup = Supervisor(sys.argv[1:])
    out = sys.stdout
    stdin = sys.stdin.fileno()
    buf = b""
    while True:
        try:
            ready, _, _ = select.select([stdin, sup.rfd], [], [])
        except InterruptedError:
            continue
        if sup.rfd in ready:
            sup._drain_wakeups()
            sup.reap()
        if stdin not in ready:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            sup.exit()
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd, *args = line.decode().split()
            if cmd == "start":
                try:
                    answer = sup.start()
                except OSError as e:
                    answer = f"error {e}"
                print(answer, file=out, flush=True)
            elif cmd == "stop":
                print(sup.stop(float(args[0]) if args else 10), file=out, flush=True)
            elif cmd == "exit":
                for answer in sup.exit():
                    print(answer, file=out, flush=True)
                print("bye", file=out, flush=True)
                return
            else:
                print(f"error unknown command {cmd!r}", file=out, flush=True)


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        if e.errno == errno.EPIPE:   # the test process went away
            sys.exit(1)
        raise
