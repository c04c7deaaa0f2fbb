"""``containerd-shim-pidsafe-v1``: its command line, as containerd runs it.

containerd runs a shim binary three ways (runtime/v2/binary.go,
runtime/v2/shim/shim.go at v1.6.20)::

    shim -namespace NS -address A -publish-binary P -id ID [-debug] start
    shim -namespace NS -id ID -address A [-debug]                       (the daemon)
    shim -namespace NS -address A -publish-binary P -id ID -bundle B delete

The flags are Go's ``flag`` package's: ``-name value``, ``-name=value``,
``--name`` the same, bool flags without a value (``-debug``,
``-debug=false``), and parsing stops at the first argument that is not a
flag (the action) or at ``--``.

This module imports nothing but ``os`` and ``sys``: ``start`` and
``delete`` run for every container (``ctr run --rm`` waits for both), so
each action loads only what it uses (``_start``, ``_delete``, ``_daemon``).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence

NAME = "containerd-shim-pidsafe-v1"

#: The flags (Go's names) and whether each is a bool.
FLAGS = {"debug": True, "v": True, "namespace": False, "id": False, "socket": False,
         "bundle": False, "address": False, "publish-binary": False}

USAGE = f"""Usage of {NAME}:
  -address string      grpc address back to main containerd
  -bundle string       path to the bundle if not workdir
  -debug               enable debug output in logs
  -id string           id of the task
  -namespace string    namespace that owns the shim
  -publish-binary string
                       path to publish binary (used for publishing events)
                       (default "containerd")
  -socket string       socket path to serve
  -v                   show the shim version and exit
actions: start, delete; none: serve (as containerd runs it)
"""


def _flag_error(message: str) -> Exception:
    """A command line Go's ``flag`` package would refuse (exit 2): a
    :class:`pidsafe.UsageError` (imported only when there is one)."""
    from ..errors import UsageError

    return UsageError(message)


class Flags:
    """The parsed command line."""

    def __init__(self) -> None:
        self.debug = False
        self.v = False
        self.namespace = ""
        self.id = ""
        self.socket = ""
        self.bundle = ""
        self.address = ""
        self.publish_binary = "containerd"
        self.args: List[str] = []

    @property
    def action(self) -> str:
        return self.args[0] if self.args else ""


def _bool(name: str, text: str) -> bool:
    # strconv.ParseBool's spellings.
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise _flag_error(f'invalid boolean value "{text}" for -{name}: parse error')


def parse_flags(argv: Sequence[str]) -> Flags:
    """Parse ``argv`` (without the program name) as Go's ``flag.Parse`` does.

    Raises:
        pidsafe.UsageError: an unknown flag, a flag without its value, a bad bool.
        SystemExit: ``-h``/``-help`` (usage on stderr, status 0, as Go).
    """
    flags = Flags()
    values: Dict[str, object] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            i += 1
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise _flag_error(f"bad flag syntax: {arg}")
        name, eq, value = name.partition("=")
        i += 1
        if name in ("h", "help") and name not in FLAGS:
            sys.stderr.write(USAGE)
            raise SystemExit(0)
        if name not in FLAGS:
            raise _flag_error(f"flag provided but not defined: -{name}")
        if FLAGS[name]:
            values[name] = _bool(name, value) if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise _flag_error(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        values[name] = value
    for key, given in values.items():
        setattr(flags, key.replace("-", "_"), given)
    flags.args = list(argv[i:])
    return flags


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line and run the action; the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        flags = parse_flags(args)
    except ValueError as exc:   # a pidsafe.UsageError from parse_flags
        sys.stderr.write(f"{exc}\n{USAGE}")
        return 2
    if flags.v:
        from .._version import __version__

        sys.stdout.write(f"{NAME}:\n  Version:  {__version__}\n  Python:   "
                         f"{sys.version.split()[0]}\n\n")
        return 0
    if not flags.namespace:
        return _fail("shim namespace cannot be empty")
    action = flags.action
    try:
        if action == "start":
            from ._start import start

            return start(flags)
        if action == "delete":
            from ._delete import delete

            return delete(flags)
        if action == "":
            from ._daemon import serve

            return serve(flags)
    except Exception as exc:   # containerd shows "<name>: <error>"; never a traceback
        return _fail(str(exc) or type(exc).__name__)
    return _fail(f"unknown action {action!r} (start, delete, or none to serve)")


def _fail(message: str) -> int:
    try:
        sys.stderr.write(f"{NAME}: {message}")
        sys.stderr.flush()
    except OSError:
        pass   # stderr closed: the exit status says it
    return 1


def run() -> None:
    """The script (scripts/containerd-shim-pidsafe-v1): :func:`main`, then out
    without the interpreter's teardown.

    Nothing is left to finalize once an action has returned (its output is
    flushed here; the daemon has closed what it owns): ``os._exit`` saves
    ``start`` and ``delete``, which containerd waits for, the few ms of
    module and thread teardown.
    """
    trace = os.environ.get("PIDSAFE_SHIM_TRACE")
    if trace:
        import time

        t0 = time.time()
    status = main()
    if trace:
        from ._binding import trace_event

        argv = sys.argv[1:]
        trace_event(trace, action=next((a for a in argv if a in ("start", "delete")), "serve"),
                    t0=t0, t1=time.time(), status=status, cpu=time.process_time())
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
