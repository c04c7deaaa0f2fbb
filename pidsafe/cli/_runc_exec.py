"""``pidsafe-runc exec``: :meth:`pidsafe.Container.exec_process` from runc's flags
or an OCI process object."""

from __future__ import annotations

import json
import os
import time
from typing import Sequence

from ..errors import UsageError
from ._runc_process import console_target, preserve_fds, receive, release, write_pid_file
from .runc import load, log_ignored, parse


def cmd_exec(root: str, argv: Sequence[str]) -> int:
    spec = {"process": "value", "detach": "flag", "pid-file": "value", "console-socket": "value",
            "env": "list", "cwd": "value", "user": "value", "tty": "flag", "help": "flag",
            "preserve-fds": "value", "pidfd-socket": "value", "no-new-privs": "flag",
            "additional-gids": "list", "cap": "list", "ignore-paused": "flag"}
    args = parse(argv, spec, {"p": "process", "d": "detach", "e": "env", "u": "user",
                              "t": "tty", "h": "help", "g": "additional-gids", "c": "cap"})
    if args.get("help"):
        print("usage: pidsafe-runc exec [--process FILE] [--detach] [--pid-file FILE] "
              "[--tty] [--console-socket SOCK] [--env K=V] [--cwd DIR] [--user UID[:GID]] "
              "[--preserve-fds N] ID [-- COMMAND ARGS...]\n\n"
              "  -p, --process FILE      an OCI process object (JSON) instead of COMMAND\n"
              "  -d, --detach            do not wait for the process\n"
              "  --pid-file FILE         write its pid to FILE\n"
              "  -t, --tty               give it a terminal (detached: sent to --console-socket)\n"
              "  --console-socket SOCK   where its terminal's master goes (SCM_RIGHTS)\n"
              "  -e, --env K=V           add to its environment (repeatable)\n"
              "  --cwd DIR               its working directory\n"
              "  -u, --user UID[:GID]    its user\n"
              "  --no-new-privs          set no_new_privs\n"
              "  --preserve-fds N        pass this process's fds 3 .. 3+N-1 to it\n"
              "  --pidfd-socket SOCK     send its pidfd over the unix socket SOCK")
        return 0
    if not args.positional:
        raise UsageError("exec: expected a container id")
    if args.get("ignore-paused"):
        raise UsageError("exec --ignore-paused: a process started in a paused container "
                         "would be frozen before it could run; resume it first")
    cid, command = args.positional[0], args.positional[1:] + args.rest
    from ..container import User, parse_process
    from ..container import JsonObject, ignored_properties

    c = load(root, cid)
    try:
        if args.get("process"):
            with open(args.get("process"), encoding="utf-8") as f:
                document = json.load(f)
            process = parse_process(JsonObject(document, "process"))
            log_ignored(args.get("process"), ignored_properties(document, "process"))
        else:
            if not command:
                raise UsageError("exec: expected a command (or --process)")
            base = c.spec().process
            # runc: no terminal unless --tty (whatever config.json says).
            process = base.replace(args=tuple(command), rlimits=(),
                                   terminal=bool(args.get("tty")))
        if args.get("env"):
            process = process.replace(env=process.env + tuple(args.get("env")))
        if args.get("cwd"):
            process = process.replace(cwd=args.get("cwd"))
        if args.get("user"):
            uid, _, gid = args.get("user").partition(":")
            process = process.replace(user=User(int(uid), int(gid or 0)))
        if args.get("no-new-privs"):
            process = process.replace(no_new_privileges=True)
        console = console_target(args, not args.get("detach"), lambda: process.terminal)
        if console and process.console_size is None:
            from ._relay import terminal_size

            # Relayed: the pty starts with our terminal's size.
            process = process.replace(console_size=terminal_size(0))
        term = None
        proc = None
        try:
            proc = c.exec_process(process, exec_id=f"cli-{os.getpid()}-{time.monotonic_ns()}",
                                  preserve_fds=preserve_fds(args),
                                  console_socket=console[0] if console
                                  else args.get("console-socket"))
            if console:
                console[0].close()
                term = receive(console[1])
        except BaseException:
            if proc is not None:
                proc.kill()
                proc.wait()
                proc.close()
            raise
        finally:
            for sock in console:
                sock.close()
        try:
            if args.get("pid-file"):
                write_pid_file(args.get("pid-file"), proc.pid)
            if args.get("detach"):
                return 0
            if term is not None:
                from ._relay import Relay

                with Relay(term) as relay:
                    relay.pump(proc.fileno())
            status: int = proc.wait()
            return status if status >= 0 else 128 - status
        finally:
            if term is not None:
                term.close()
            release(proc, not args.get("detach"))
            proc.close()
    finally:
        c.close()
