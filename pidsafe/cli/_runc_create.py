"""``pidsafe-runc create`` and ``run``: :meth:`pidsafe.Container.create`, and for
``run`` start, wait and delete, relaying signals (and a terminal) in the
foreground."""

from __future__ import annotations

import os

from .. import _lite
from ._runc_process import (Console, exit_status, forwarding, preserve_fds, release,
                            remove_pid_file, send_pidfd, undo, write_pid_file)
from .runc import ignoring_config_warnings, log_hook_warnings, log_ignored, one_id, parse_or_help

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional, Sequence

#: Options of create and run that runc has, as they behave here.
CREATE_HELP = """
  -b, --bundle DIR        the bundle (default: the current directory)
  --pid-file FILE         write init's pid to FILE (atomically)
  --console-socket SOCK   send the terminal's master over SOCK (process.terminal)
  --preserve-fds N        pass this process's fds 3 .. 3+N-1 to the container's
                          program at the same numbers (each must be open)
  --pidfd-socket SOCK     send init's pidfd over the unix socket SOCK
  --no-pivot              accepted for runc compatibility and ignored: the root is
                          entered with pivot_root(2) when the container has a mount
                          namespace (so a rootfs on the initial ramfs cannot be
                          used), with chroot(2) when it shares the runtime's
  --no-new-keyring        accepted for runc compatibility: pidsafe never makes a new
                          session keyring, so the container always shares the
                          caller's (runc's default would give it a new one)"""


def cmd_create(root: str, argv: Sequence[str], *, run: bool = False) -> int:
    spec = {"bundle": "value", "pid-file": "value", "console-socket": "value",
            "no-pivot": "flag", "no-new-keyring": "flag", "preserve-fds": "value",
            "pidfd-socket": "value", "detach": "flag", "keep": "flag"}
    usage = ("usage: pidsafe-runc " + ("run" if run else "create") + " [--bundle DIR] "
             "[--pid-file FILE] [--console-socket SOCK] [--no-pivot] [--no-new-keyring] "
             "[--preserve-fds N] [--pidfd-socket SOCK]" + (" [--detach] [--keep]" if run else "")
             + " ID\n" + CREATE_HELP + ("\n  -d, --detach            do not wait for the "
                                         "container\n  --keep                  do not delete "
                                         "it when it exits" if run else ""))
    args = parse_or_help(argv, usage, spec, {"b": "bundle", "d": "detach"})
    if args is None:
        return 0
    cid = one_id(args, "run" if run else "create")
    preserve = preserve_fds(args)
    from ..container import Container, require_root

    require_root("create a container")   # before the state root is made: a typed error
    foreground = run and not args.get("detach")
    console = Console(args, foreground, lambda: _config_terminal(args.get("bundle", ".")))
    term = None
    c = None
    pid_file = args.get("pid-file")
    wrote_pid: Optional[int] = None
    waited = False
    try:
        try:
            # Every step until the command has done what it was asked is
            # undone if a later one fails: a command that exits non-zero
            # leaves nothing.  (Container.create undoes its own steps.)
            with console:
                with ignoring_config_warnings():   # logged below, as runc does
                    c = Container.create(cid, args.get("bundle", "."), state_dir=root,
                                         preserve_fds=preserve, console_socket=console.socket)
                term = console.receive()
            log_ignored("config.json", c.spec().ignored)
            if args.get("pidfd-socket"):
                send_pidfd(args.get("pidfd-socket"), c.id, c.process())
            if pid_file and c.pid is not None:
                # create's last step: once there is a pid file, the container is.
                wrote_pid = c.pid   # the undo first: it removes only a file with this pid
                write_pid_file(pid_file, c.pid)
            if not run:
                return 0
            log_hook_warnings(c)
            if not foreground:
                c.start()
                return 0
            with forwarding(c.process(), tty=term is not None):
                if term is not None:
                    from ._relay import Relay

                    with Relay(term) as relay:   # sized and raw before the program runs
                        c.start()
                        init = c.process()
                        if init is not None:
                            relay.pump(init.fileno())
                    term.close()
                else:
                    c.start()
                status = c.wait()
                waited = True
        except BaseException as exc:
            if c is not None:
                waited = True   # delete kills and reaps init
                undo(exc, c.delete, force=True)
            if wrote_pid is not None:
                undo(exc, remove_pid_file, pid_file, wrote_pid)
            raise
        if not args.get("keep"):
            c.delete(force=True)
        return exit_status(status)
    finally:
        if term is not None:
            term.close()
        if c is not None:
            release(c.process(), waited)
            c.close()


def cmd_run(root: str, argv: Sequence[str]) -> int:
    """``run``: create, start and (unless ``--detach``) wait and delete."""
    return cmd_create(root, argv, run=True)


def _config_terminal(bundle: str) -> bool:
    """Whether the bundle's process asks for a terminal (``run`` in the foreground)."""
    try:
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            doc = _lite.loads(f.read())
        return doc.get("process", {}).get("terminal") is True
    except (OSError, ValueError, AttributeError):
        return False   # create reports what is wrong with the bundle
