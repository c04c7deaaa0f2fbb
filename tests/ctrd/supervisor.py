"""The test process's end of a containerd's supervisor (tests/ctrd/supervisor_main.py).

The supervisor is a subreaper with a private mount namespace that runs
containerd and reaps (or, at the end, kills) its shims; this module starts
it and speaks its line protocol, with a timeout on every answer.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from typing import Dict, List, Optional

import session_owned

MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor_main.py")


class Supervisor:
    """The test process's end of a supervisor process running ``containerd_argv``.

    Its stderr (and containerd's output) is appended to ``log_path``.  Its
    pid and pipes are session-owned (tests/session_owned.py) until :meth:`exit`.
    """

    def __init__(self, containerd_argv: List[str], *, log_path: str, env: Dict[str, str],
                 cwd: str) -> None:
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen([sys.executable, "-S", MAIN, *containerd_argv],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, env=env, cwd=cwd)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self.pid = self._proc.pid
        session_owned.own_pid(self.pid)
        session_owned.own_fds([self._proc.stdin.fileno(), self._proc.stdout.fileno()])
        self._buf = b""
        #: containerd's pid while it runs.
        self.containerd: Optional[int] = None

    def _ask(self, command: str, last: str, timeout: float) -> List[str]:
        """Send ``command``; its answer lines, up to the one starting with ``last``."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(command.encode() + b"\n")
        self._proc.stdin.flush()
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        lines: List[str] = []
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                lines.append(line.decode(errors="replace"))
                if lines[-1].startswith((last, "error")):
                    if lines[-1].startswith("error"):
                        raise RuntimeError(f"supervisor: {command}: {lines[-1]}")
                    return lines
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"supervisor: no answer to {command!r} in {timeout} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"supervisor died during {command!r} "
                                     f"(status {self._proc.wait()})")
            self._buf += chunk

    def start_containerd(self, timeout: float = 30) -> int:
        self.containerd = int(self._ask("start", "started", timeout)[-1].split()[1])
        return self.containerd

    def stop_containerd(self, timeout: float = 10) -> str:
        """SIGTERM containerd (SIGKILL after ``timeout``); its wait status."""
        answer = self._ask(f"stop {timeout}", "stopped", timeout + 40)[-1].split()[1]
        self.containerd = None
        return answer

    def orphans(self) -> List[int]:
        """Our children but containerd: shims, and orphans of theirs."""
        kids: List[int] = []
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/children") as f:
                    kids += [int(p) for p in f.read().split()]
            except FileNotFoundError:
                continue
        return sorted(k for k in kids if k != self.containerd)

    def mount_points(self) -> List[str]:
        """Every mount point in the private mount namespace."""
        with open(f"/proc/{self.pid}/mountinfo", errors="surrogateescape") as f:
            return [line.split()[4] for line in f]

    def exit(self, timeout: float = 120) -> List[str]:
        """Stop containerd and kill what is left; the "left PID CMDLINE" lines."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            lines = self._ask("exit", "bye", timeout)[:-1]
        finally:
            for pipe in (self._proc.stdin, self._proc.stdout):
                session_owned.disown_fd(pipe.fileno())
            self._proc.stdin.close()   # EOF: it cleans up and exits, even if it did not answer
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()   # hung: its children then go to PID 1
                self._proc.wait()
            self._proc.stdout.close()
            session_owned.disown_pid(self.pid)
            self.containerd = None
        return [line for line in lines if line.startswith("left")]
