"""The ``pidsafe`` command.

``pidsafe doctor [--json]``
    Kernel, features, the caller's capabilities, and a verdict per area
    (spawn, reaper, user namespaces, idmapped mounts, containers, seccomp,
    cgroups: ok, limited or unavailable, with the reason and what a
    non-root user can do); ``--json``: the same as one JSON object (schema
    in ``_doctor``).  Exits 1 when something spawn() needs is missing.
``pidsafe --version``
    The version.
``pidsafe run -- PROG [ARGS...]``
    Run a program as a pidsafe child and exit with its status (128+N when
    killed by signal N, as shells do).  SIGINT, SIGTERM, SIGHUP, SIGQUIT,
    SIGUSR1, SIGUSR2, SIGWINCH and SIGCONT sent to ``pidsafe`` go to the
    program.
``pidsafe mount --uidmap MAP --gidmap MAP [--readonly] [--no-recursive] SOURCE TARGET``
    Bind SOURCE onto TARGET as an idmapped mount, through a new user
    namespace with those maps (containerd's ``c:h:s[,c:h:s...]`` form).
    Exits 0, 1 when a mount step fails, 2 for bad arguments.
``pidsafe userns --uidmap MAP --gidmap MAP -- PROG [ARGS...]``
    Run a program as root (uid/gid 0) of a new user namespace with those
    maps and exit with its status, as ``run`` does; 2 for bad maps.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from ..process import Process

# No imports of argparse or of pidsafe's layers here: this package also
# holds pidsafe-runc (cli/runc.py), whose every command pays for what its
# parent package imports.

__all__ = ["main"]

def doctor(as_json: bool = False) -> int:
    """``pidsafe doctor`` (``_doctor``): 0 if spawn() can work here, else 1."""
    from ._doctor import doctor as run_doctor

    return run_doctor(as_json)


#: What ``pidsafe run`` passes on to its program, as a supervisor expects of
#: a process it starts (Ctrl-C and job control from a terminal, ``kill``,
#: ``docker stop``, systemd, a window resize).
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2",
                     "SIGWINCH", "SIGCONT")


def run(argv: Sequence[str], **spawn_kw: Any) -> int:
    """Spawn ``argv`` through pidsafe, wait through its pidfd, return its status.

    The signals in :data:`FORWARDED_SIGNALS` that reach this process go to
    the program, which decides whether to exit.  ``spawn_kw`` goes to
    :func:`pidsafe.spawn` (``pidsafe userns`` passes ``uidmap`` and
    ``gidmap``).
    """
    import signal

    from ..process import Process, spawn

    # Handlers rather than `except KeyboardInterrupt` around the wait: a
    # signal may arrive before the wait has begun (even before spawn() has
    # returned), and then it must still be forwarded.  Handlers run between
    # bytecodes, so a signal is either sent directly or queued and sent
    # just below.  send_signal() is safe to call from a handler.
    child: List[Process] = []
    pending: List[int] = []

    def forward(signum: int, frame: Any) -> None:
        if child:
            child[0].send_signal(signum)
        else:
            pending.append(signum)

    signums = [getattr(signal, name) for name in FORWARDED_SIGNALS]
    old = {}
    # A handler runs between bytecodes: a signal that comes after the last
    # check and before a blocking wait begins would wait with it, until the
    # program exits, which without the signal may be never.  The wait also
    # watches a wakeup fd, which the signal's C handler writes whenever it
    # comes (before the wait included).
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = None
    try:
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in signums:
            old[signum] = signal.signal(signum, forward)
        with spawn(list(argv), **spawn_kw) as p:
            child.append(p)
            while pending:
                p.send_signal(pending.pop(0))
            code = _wait_waking(p, wake_r)
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
    return code if code >= 0 else 128 - code


def _wait_waking(p: Process, wake_fd: int) -> int:
    """Reap ``p``, waking for its exit (its pidfd) or for a signal (a byte on
    ``wake_fd``, the wakeup fd): the handlers run as the poll returns."""
    import select

    poller = select.poll()
    poller.register(p.fileno(), select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
    while True:
        code = p.poll()
        if code is not None:
            return code
        poller.poll()
        try:
            os.read(wake_fd, 4096)
        except BlockingIOError:
            pass


def mount(source: str, target: str, uidmap: str, gidmap: str, *, readonly: bool,
          recursive: bool) -> int:
    """``pidsafe mount``: an idmapped bind through a new user namespace."""
    from ..mount import idmapped_bind
    from ..userns import get_userns_fd

    try:
        with get_userns_fd(uidmap, gidmap) as userns:
            idmapped_bind(source, target, userns, recursive=recursive, readonly=readonly)
    except ValueError as exc:
        print(f"pidsafe mount: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pidsafe mount: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``pidsafe`` console script."""
    import argparse

    from .._version import __version__

    parser = argparse.ArgumentParser(prog="pidsafe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"pidsafe {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p_doctor = sub.add_parser("doctor", help="what pidsafe can do here, area by area")
    p_doctor.add_argument("--json", action="store_true",
                          help="one JSON object (a stable schema) instead of tables")
    p_run = sub.add_parser("run", help="run a program as a pidfd-held child")
    p_run.add_argument("argv", nargs=argparse.REMAINDER, help="-- PROG [ARGS...]")
    p_mount = sub.add_parser("mount", help="bind SOURCE onto TARGET as an idmapped mount")
    p_mount.add_argument("--uidmap", required=True, help="uid map, e.g. 0:100000:65536")
    p_mount.add_argument("--gidmap", required=True, help="gid map, e.g. 0:100000:65536")
    p_mount.add_argument("--readonly", action="store_true", help="make the mount read-only")
    p_mount.add_argument("--no-recursive", dest="recursive", action="store_false",
                         help="leave out the submounts of SOURCE")
    p_mount.add_argument("source")
    p_mount.add_argument("target")
    p_userns = sub.add_parser("userns", help="run a program as root of a new user namespace")
    p_userns.add_argument("--uidmap", required=True, help="uid map, e.g. 0:100000:65536")
    p_userns.add_argument("--gidmap", required=True, help="gid map, e.g. 0:100000:65536")
    p_userns.add_argument("argv", nargs=argparse.REMAINDER, help="-- PROG [ARGS...]")
    ns = parser.parse_args(argv)
    if ns.cmd == "doctor":
        return doctor(ns.json)
    if ns.cmd == "mount":
        return mount(ns.source, ns.target, ns.uidmap, ns.gidmap, readonly=ns.readonly,
                     recursive=ns.recursive)
    spawn_kw: Dict[str, Any] = {}
    if ns.cmd == "userns":
        from ..userns import IDMap
        from ..errors import IDMapError

        try:
            spawn_kw = {"uidmap": IDMap.parse(ns.uidmap), "gidmap": IDMap.parse(ns.gidmap)}
        except IDMapError as exc:
            parser.error(f"userns: {exc}")
    args = list(ns.argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        parser.error(f"{ns.cmd}: name a program to run")
    try:
        return run(args, **spawn_kw)
    except OSError as exc:
        print(f"pidsafe {ns.cmd}: {exc}", file=sys.stderr)
        return 127

