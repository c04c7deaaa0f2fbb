"""``pidsafe-runc exec``: :meth:`pidsafe.Container.exec_process` from runc's flags
or an OCI process object.

As runc's, the command line is ``exec [OPTIONS] ID COMMAND [ARGS...]``: the
options end at the id, so the command's own flags (``sh -c X``, ``ls -t``)
are the command's.  A ``--`` right after the id is a separator and dropped.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, List, Optional, Sequence, Tuple

from ..errors import UsageError
from ._runc_process import (Console, exit_status, forwarding, preserve_fds, release,
                            remove_pid_file, send_pidfd, undo, write_pid_file)
from .runc import Args, load, log_ignored, parse_or_help

EXEC_HELP = """usage: pidsafe-runc exec [OPTIONS] ID COMMAND [ARGS...]
       pidsafe-runc exec [OPTIONS] --process FILE ID

Options come before the id; everything after it is the command (a '--' right
after the id is dropped).

  -p, --process FILE      an OCI process object (JSON) instead of COMMAND
  -d, --detach            do not wait for the process
  --pid-file FILE         write its pid to FILE
  --pidfd-socket SOCK     send its pidfd over the unix socket SOCK
  -t, --tty               give it a terminal (detached: sent to --console-socket)
  --console-socket SOCK   where its terminal's master goes (SCM_RIGHTS)
  -e, --env NAME=VALUE    add to its environment (repeatable)
  --cwd DIR               its working directory
  -u, --user UID[:GID]    its user and group, as numbers (no names: nothing is looked
                          up in the container's /etc/passwd); without GID, the
                          config's group
  -g, --additional-gids N add a supplementary group (repeatable)
  -c, --cap CAP           add a capability to its bounding, effective and permitted
                          sets (and ambient, if the config has inheritable ones)
  --no-new-privs          set no_new_privs
  --preserve-fds N        pass this process's fds 3 .. 3+N-1 to it"""

#: The largest uid or gid (2**32 - 1 is the kernel's "no id").
_MAX_ID = 2**32 - 2


def cmd_exec(root: str, argv: Sequence[str]) -> int:
    spec = {"process": "value", "detach": "flag", "pid-file": "value", "console-socket": "value",
            "env": "list", "cwd": "value", "user": "value", "tty": "flag",
            "preserve-fds": "value", "pidfd-socket": "value", "no-new-privs": "flag",
            "additional-gids": "list", "cap": "list", "ignore-paused": "flag"}
    # Options end at the id (runc's StopOnNthArg): the rest is the command.
    args = parse_or_help(argv, EXEC_HELP, spec, {"p": "process", "d": "detach", "e": "env",
                                                 "u": "user", "t": "tty", "g": "additional-gids",
                                                 "c": "cap"}, stop_after=1)
    if args is None:
        return 0
    if not args.positional:
        raise UsageError("exec: expected a container id")
    if args.get("ignore-paused"):
        raise UsageError("exec --ignore-paused: a process started in a paused container "
                         "would be frozen before it could run; resume it first")
    cid, command = args.positional[0], args.positional[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    # Bad input is refused before anything exists.
    env = [_env(item) for item in args.get("env", [])]
    user = _user(args.get("user"))
    gids = [_id("--additional-gids", text) for text in args.get("additional-gids", [])]
    caps = [_cap(name) for name in args.get("cap", [])]
    preserve = preserve_fds(args)
    if not args.get("process") and not command:
        raise UsageError("exec: expected a command after the container id (or --process)")
    c = load(root, cid)
    try:
        process = _process(c, args, command)
        if env:
            process = process.replace(env=process.env + tuple(env))
        if args.get("cwd"):
            process = process.replace(cwd=args.get("cwd"))
        if user is not None:
            uid, gid = user
            process = process.replace(user=process.user.replace(
                uid=uid, gid=process.user.gid if gid is None else gid))
        if gids:
            process = process.replace(user=process.user.replace(
                additional_gids=process.user.additional_gids + tuple(gids)))
        if caps:
            process = process.replace(capabilities=_with_caps(process.capabilities, caps))
        if args.get("no-new-privs"):
            process = process.replace(no_new_privileges=True)
        return _run(c, process, args, preserve)
    finally:
        c.close()


def _process(c: Any, args: Args, command: List[str]) -> Any:
    """The process: ``--process``'s JSON, else the config's with ``command``."""
    from ..container import JsonObject, ignored_properties, parse_process

    if args.get("process"):
        with open(args.get("process"), encoding="utf-8") as f:
            document = json.load(f)
        process = parse_process(JsonObject(document, "process"))
        log_ignored(args.get("process"), ignored_properties(document, "process"))
        return process
    # runc: no terminal unless --tty (whatever config.json says).
    return c.spec().process.replace(args=tuple(command), rlimits=(),
                                    terminal=bool(args.get("tty")))


def _run(c: Any, process: Any, args: Args, preserve: int) -> int:
    """Start ``process`` in ``c``; in the foreground, wait for it.

    Until the command has done what it was asked (the process started,
    its pidfd sent, its pid file written; in the foreground, its exit
    status known), a failing step kills and reaps the process and removes
    the pid file: an exec that exits non-zero leaves nothing running.
    """
    detach = bool(args.get("detach"))
    console = Console(args, not detach, lambda: process.terminal)
    if console.relayed and process.console_size is None:
        from ._relay import terminal_size

        # Relayed: the pty starts with our terminal's size.
        process = process.replace(console_size=terminal_size(0))
    term = None
    proc = None
    pid_file = args.get("pid-file")
    wrote_pid: Optional[int] = None
    waited = False
    try:
        try:
            with console:
                proc = c.exec_process(process,
                                      exec_id=f"cli-{os.getpid()}-{time.monotonic_ns()}",
                                      preserve_fds=preserve, console_socket=console.socket)
                term = console.receive()
            if args.get("pidfd-socket"):
                send_pidfd(args.get("pidfd-socket"), c.id, proc)
            if pid_file:
                wrote_pid = proc.pid   # the undo first: it removes only a file with this pid
                write_pid_file(pid_file, proc.pid)
            if detach:
                return 0
            with forwarding(proc, tty=term is not None):
                if term is not None:
                    from ._relay import Relay

                    with Relay(term) as relay:
                        relay.pump(proc.fileno())
                status: int = proc.wait()
                waited = True
        except BaseException as exc:
            if proc is not None and not waited:
                waited = True
                undo(exc, _end, proc)
            if wrote_pid is not None:
                undo(exc, remove_pid_file, pid_file, wrote_pid)
            raise
        return exit_status(status)
    finally:
        if term is not None:
            term.close()
        if proc is not None:
            release(proc, waited)
            proc.close()


def _end(proc: Any) -> None:
    """SIGKILL through the pidfd, then reap: the process is our child."""
    try:
        proc.kill()
    except ProcessLookupError:
        pass   # exited already: the wait reaps it
    proc.wait(10.0)   # a timeout is an error noted on the command's


def _env(item: str) -> str:
    """``--env NAME=VALUE``: refused without ``=`` (or without a name)."""
    name, eq, _ = item.partition("=")
    if not eq or not name:
        raise UsageError(f"--env {item!r}: must be NAME=VALUE")
    return item


def _id(flag: str, text: str) -> int:
    """A uid or gid given as a number."""
    if not text.isdigit() or not text.isascii() or int(text) > _MAX_ID:
        raise UsageError(f"{flag}: {text!r} is not a numeric id (0 .. {_MAX_ID})")
    return int(text)


def _user(text: Optional[str]) -> Optional[Tuple[int, Optional[int]]]:
    """``--user UID[:GID]``: numbers, as runc takes them.

    A name is refused rather than looked up: resolving it would mean
    reading the container's /etc/passwd, which the container controls.
    """
    if text is None:
        return None
    uid, colon, gid = text.partition(":")
    for part in (uid, gid) if colon else (uid,):
        if not (part.isdigit() and part.isascii()):
            raise UsageError(f"--user {text!r}: expected UID[:GID] as numbers; user and "
                             "group names are not looked up")
    return _id("--user", uid), _id("--user", gid) if colon else None


def _cap(name: str) -> int:
    """``--cap CAP_NAME`` (``NAME`` alone too) as its number."""
    from ..container import CAPABILITIES

    full = name.upper() if name.upper().startswith("CAP_") else f"CAP_{name.upper()}"
    number = CAPABILITIES.get(full)
    if number is None:
        raise UsageError(f"--cap {name!r}: unknown capability")
    return number


def _with_caps(caps: Any, added: List[int]) -> Any:
    """runc's ``exec --cap``: into bounding, effective and permitted; ambient
    too when the process has inheritable capabilities (ambient ones need them)."""
    from ..container import Capabilities

    base = caps if caps is not None else Capabilities()
    more = frozenset(added)
    return base.replace(bounding=base.bounding | more, effective=base.effective | more,
                        permitted=base.permitted | more,
                        ambient=base.ambient | more if base.inheritable else base.ambient)
