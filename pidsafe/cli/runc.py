"""``pidsafe-runc``: runc's command line on top of :class:`pidsafe.Container`.

Anything that speaks runc's CLI (containerd's runc shim, the OCI
validation suite, scripts) can run pidsafe instead, with init held by a
pidfd from birth.  There is no second implementation: every command is a
call into :mod:`pidsafe.container`.  Imports stay lazy so that a command
pays only for what it uses (three runs per container lifecycle).

Exit status: 0, or 1 with the error on stderr and, with ``--log``, as the
last line of the log file (``--log-format json``: one object a line, as
containerd's shim reads it).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, Dict, List, NoReturn, Optional, Sequence

from ..errors import Error, UsageError

DEFAULT_ROOT = "/run/pidsafe-runc"
USAGE = """usage: pidsafe-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                    COMMAND [OPTIONS] [ARGS]

commands:
  create   create a container (its program waits for start)
  start    start a created container
  run      create and start a container, and wait for it (unless --detach)
  state    print a container's state as JSON
  kill     send a signal to a container's init (or, with --all, to all its processes)
  delete   delete a container (--force: even a running one)
  exec     run a process in a running container
  list     list containers
  ps       list the processes of a container
  pause    freeze every process of a container (its cgroup freezer)
  resume   thaw a paused container
  update   change a container's cgroup limits (--resources FILE|-, --memory, ...)
  features print what this runtime supports, as JSON
  help     this text, or 'help COMMAND': a command's options
Run 'pidsafe-runc COMMAND --help' for a command's options."""

#: Options of create and run that runc has, as they behave here.
CREATE_HELP = """
  -b, --bundle DIR        the bundle (default: the current directory)
  --pid-file FILE         write init's pid to FILE (atomically)
  --console-socket SOCK   send the terminal's master over SOCK (process.terminal)
  --preserve-fds N        pass this process's fds 3 .. 3+N-1 to the container's
                          program at the same numbers (each must be open)
  --pidfd-socket SOCK     send init's pidfd over the unix socket SOCK
  --no-pivot              accepted for runc compatibility and ignored: the root is
                          always entered with pivot_root(2), so a rootfs on the
                          initial ramfs cannot be used
  --no-new-keyring        accepted for runc compatibility: pidsafe never makes a new
                          session keyring, so the container always shares the
                          caller's (runc's default would give it a new one)"""


class _Log:
    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.json = False
        self.debug = False

    def write(self, level: str, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.path:
            if self.json:
                line = json.dumps({"level": level, "msg": msg, "time": stamp})
            else:
                line = f'time="{stamp}" level={level} msg={json.dumps(msg)}'
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
                try:
                    os.write(fd, (line + "\n").encode())
                finally:
                    os.close(fd)
            except OSError:
                pass   # the log is best effort; stderr below always gets it
        if level in ("error", "warning") or self.debug:
            sys.stderr.write(f"pidsafe-runc: {level}: {msg}\n" if level == "warning"
                             else f"pidsafe-runc: {msg}\n")


LOG = _Log()


def _log_hook_warnings(c: Any) -> None:
    """Send the ``pidsafe.container`` logger's warnings (a failed poststart or
    poststop hook) to --log and stderr, if the container has hooks at all
    (``logging`` costs a few ms to import: commands without hooks skip it).

    Without this (create: its poststop hooks run only after a failed create
    hook), logging's last-resort handler still prints them on stderr.
    """
    if not c.has_hooks("poststart", "poststop"):
        return
    import logging

    class Bridge(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            LOG.write("warning", record.getMessage())

    logger = logging.getLogger("pidsafe.container")
    if not any(type(h).__name__ == "Bridge" for h in logger.handlers):
        logger.addHandler(Bridge(logging.WARNING))


def _log_ignored(what: str, paths: Sequence[str]) -> None:
    """A warning for each property of ``what`` that pidsafe ignored (runtime-spec
    "Extensibility": a runtime MAY log unknown properties and MUST ignore them)."""
    if not paths:
        return
    from ..container._reader import OTHER_PLATFORMS

    for path in paths:
        why = ("a section for another platform" if path in OTHER_PLATFORMS
               else "runtime-spec does not define it (a misspelt field?)")
        LOG.write("warning", f"{what}: {path} ignored: {why}")


# --- argument parsing: runc's flag spelling (-x, --long, --long=value) ---------

class Args:
    """Parsed options of one command."""

    def __init__(self, flags: Dict[str, Any], positional: List[str], rest: List[str]) -> None:
        self.flags = flags
        self.positional = positional
        self.rest = rest

    def get(self, name: str, default: Any = None) -> Any:
        return self.flags.get(name, default)


def parse(argv: Sequence[str], spec: Dict[str, str], aliases: Dict[str, str]) -> Args:
    """``spec``: option -> "flag" | "value" | "list"; ``aliases``: short -> long."""
    flags: Dict[str, Any] = {}
    positional: List[str] = []
    rest: List[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest = argv[i + 1:]
            break
        if a.startswith("-") and a != "-" and not positional:
            name, eq, value = a.lstrip("-").partition("=")
            name = aliases.get(name, name)
            kind = spec.get(name)
            if kind is None:
                raise UsageError(f"flag provided but not defined: {a}")
            if kind == "flag":
                flags[name] = value.lower() not in ("false", "0") if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {a}")
                    value = argv[i]
                if kind == "list":
                    flags.setdefault(name, []).append(value)
                else:
                    flags[name] = value
        elif positional and not rest and a.startswith("-") and a != "-" and \
                spec.get(aliases.get(a.lstrip("-").partition("=")[0],
                                     a.lstrip("-").partition("=")[0])):
            # runc (urfave/cli) takes flags after the id too for some commands.
            positional_done = positional
            sub = parse(argv[i:], spec, aliases)
            flags.update(sub.flags)
            return Args(flags, positional_done + sub.positional, sub.rest)
        else:
            positional.append(a)
        i += 1
    return Args(flags, positional, rest)


def _one_id(args: Args, cmd: str) -> str:
    if len(args.positional) != 1:
        raise UsageError(f"{cmd}: expected exactly one container id, got "
                         f"{len(args.positional)}")
    return args.positional[0]


# --- commands ---------------------------------------------------------------------

def _write_pid_file(path: str, pid: int) -> None:
    """The pid file, atomically: a temp file renamed over it."""
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _state_json(c: Any) -> Dict[str, Any]:
    st = c.state()
    created = c.created
    out: Dict[str, Any] = {
        "ociVersion": st["ociVersion"], "id": st["id"], "pid": st.get("pid", 0),
        "status": st["status"], "bundle": st["bundle"], "rootfs": c.rootfs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1e9):09d}Z",
        "owner": ""}
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    return out


def _load(root: str, cid: str) -> Any:
    from ..container._container import Container

    return Container.load(root, cid)


def cmd_create(root: str, argv: Sequence[str], *, run: bool = False) -> int:
    spec = {"bundle": "value", "pid-file": "value", "console-socket": "value",
            "no-pivot": "flag", "no-new-keyring": "flag", "preserve-fds": "value",
            "pidfd-socket": "value", "detach": "flag", "keep": "flag", "help": "flag"}
    args = parse(argv, spec, {"b": "bundle", "d": "detach", "h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc " + ("run" if run else "create") + " [--bundle DIR] "
              "[--pid-file FILE] [--console-socket SOCK] [--no-pivot] [--no-new-keyring] "
              "[--preserve-fds N] [--pidfd-socket SOCK]" + (" [--detach] [--keep]" if run else "")
              + " ID\n" + CREATE_HELP + ("\n  -d, --detach            do not wait for the "
                                          "container\n  --keep                  do not delete "
                                          "it when it exits" if run else ""))
        return 0
    cid = _one_id(args, "run" if run else "create")
    preserve = _preserve_fds(args)
    from ..container._container import Container

    foreground = run and not args.get("detach")
    console = _console_target(args, foreground,
                              lambda: _config_terminal(args.get("bundle", ".")))
    os.makedirs(root, mode=0o711, exist_ok=True)
    term = None
    c = None
    try:
        c = Container.create(cid, args.get("bundle", "."), state_dir=root, preserve_fds=preserve,
                             console_socket=console[0] if console
                             else args.get("console-socket"))
        _log_ignored("config.json", c.spec().ignored)
        if console:
            console[0].close()
            term = _receive(console[1])
    except BaseException:
        if c is not None:
            c.delete(force=True)
        raise
    finally:
        for sock in console:
            sock.close()
    waited = False
    try:
        if args.get("pid-file") and c.pid is not None:
            _write_pid_file(args.get("pid-file"), c.pid)
        if args.get("pidfd-socket"):
            _send_pidfd(args.get("pidfd-socket"), c)
        if not run:
            return 0
        _log_hook_warnings(c)
        if not foreground:
            c.start()
            return 0
        with _forwarding(c.process(), tty=term is not None):
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
            waited = True
            status = c.wait()
        if not args.get("keep"):
            c.delete(force=True)
        return status if status >= 0 else 128 - status
    finally:
        if term is not None:
            term.close()
        _release(c.process(), waited)
        c.close()


class _forwarding:
    """While in the foreground, signals that reach us go to init (as ``runc run``).

    Handlers, not ``except KeyboardInterrupt``: a signal that arrives at any
    point, before start included, is passed on and never raises here.
    ``Process.send_signal`` goes through init's pidfd and is safe to call
    from a handler.  With a terminal, ``SIGWINCH`` is the relay's.
    """

    def __init__(self, init: Any, *, tty: bool) -> None:
        from . import FORWARDED_SIGNALS

        self.init = init
        self.signums = [int(getattr(signal, name)) for name in FORWARDED_SIGNALS
                        if not (tty and name == "SIGWINCH")]
        self.old: Dict[int, Any] = {}

    def _forward(self, signum: int, frame: Any) -> None:
        if self.init is not None and self.init.returncode is None:
            try:
                self.init.send_signal(signum)
            except ProcessLookupError:
                pass   # exited meanwhile: the wait below sees it

    def __enter__(self) -> "_forwarding":
        for signum in self.signums:
            self.old[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.old.items():
            signal.signal(signum, handler)


def _release(proc: Any, waited: bool) -> None:
    """Leave a process we do not wait for to whoever inherits it when we exit.

    Whatever reaps it gets its exit status: a shim (a subreaper) that ran us
    waits for exactly that, so we must never reap it ourselves, not even
    when it has already exited by the time we close its handle.
    """
    if proc is not None and not waited:
        proc.release()


def _preserve_fds(args: Args) -> int:
    text = args.get("preserve-fds")
    if text is None:
        return 0
    if not text.isdigit():
        raise UsageError(f"--preserve-fds: not a non-negative integer: {text!r}")
    return int(text)


def _console_target(args: Args, foreground: bool, terminal: Any) -> List[Any]:
    """runc's rules for ``--console-socket``; a socketpair when we relay the terminal.

    ``terminal()`` says whether the process has one (read only if needed).
    A detached process's terminal goes to ``--console-socket`` (the library
    refuses a terminal without one); a foreground one is relayed here
    through a socketpair: [our end for init, our end to receive].
    """
    if args.get("console-socket"):
        if foreground:
            raise UsageError("--console-socket: cannot use a console socket if pidsafe-runc "
                             "will not detach (use --detach)")
        return []
    if foreground and terminal():
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        return [a, b]
    return []


def _config_terminal(bundle: str) -> bool:
    """Whether the bundle's process asks for a terminal (``run`` in the foreground)."""
    try:
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            doc = json.load(f)
        return doc.get("process", {}).get("terminal") is True
    except (OSError, ValueError, AttributeError):
        return False   # create reports what is wrong with the bundle


def _receive(sock: Any) -> Any:
    from ..container._console import receive_terminal

    return receive_terminal(sock)


def _send_pidfd(path: str, c: Any) -> None:
    """Send init's pidfd over the unix socket at ``path`` (SCM_RIGHTS), as runc >= 1.2."""
    import socket

    proc = c.process()
    if proc is None:
        raise UsageError("--pidfd-socket: the container has no init")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.connect(path)
        socket.send_fds(s, [c.id.encode()], [proc.fileno()])


def cmd_start(root: str, argv: Sequence[str]) -> int:
    args = parse(argv, {"help": "flag"}, {"h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc start ID")
        return 0
    c = _load(root, _one_id(args, "start"))
    try:
        _log_hook_warnings(c)
        c.start()
    finally:
        c.close()
    return 0


def cmd_state(root: str, argv: Sequence[str]) -> int:
    args = parse(argv, {"help": "flag"}, {"h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc state ID")
        return 0
    c = _load(root, _one_id(args, "state"))
    try:
        print(json.dumps(_state_json(c), indent=2))
    finally:
        c.close()
    return 0


def parse_signal(text: str) -> int:
    """``15``, ``TERM`` or ``SIGTERM`` (runc's spellings)."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise UsageError(f"unknown signal {text!r}") from None


def cmd_kill(root: str, argv: Sequence[str]) -> int:
    args = parse(argv, {"all": "flag", "help": "flag"}, {"a": "all", "h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc kill [--all] ID [SIGNAL]")
        return 0
    if not 1 <= len(args.positional) <= 2:
        raise UsageError("kill: expected ID [SIGNAL]")
    sig = parse_signal(args.positional[1]) if len(args.positional) == 2 else signal.SIGTERM
    c = _load(root, args.positional[0])
    try:
        c.kill(sig, all=bool(args.get("all")))
    finally:
        c.close()
    return 0


def cmd_delete(root: str, argv: Sequence[str]) -> int:
    args = parse(argv, {"force": "flag", "help": "flag"}, {"f": "force", "h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc delete [--force] ID")
        return 0
    from ..errors import ContainerLookupError

    try:
        c = _load(root, _one_id(args, "delete"))
    except ContainerLookupError:
        if args.get("force"):
            return 0   # runc: delete --force of a missing container succeeds
        raise
    _log_hook_warnings(c)
    c.delete(force=bool(args.get("force")))
    return 0


def cmd_list(root: str, argv: Sequence[str]) -> int:
    args = parse(argv, {"format": "value", "quiet": "flag", "help": "flag"},
                 {"f": "format", "q": "quiet", "h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc list [--format table|json] [--quiet]")
        return 0
    from ..container._container import Container

    rows = []
    for cid in Container.list(root):
        try:
            c = Container.load(root, cid)
        except Exception:   # deleted meanwhile
            continue
        try:
            rows.append(_state_json(c))
        finally:
            c.close()
    if args.get("quiet"):
        for r in rows:
            print(r["id"])
    elif args.get("format") == "json":
        print(json.dumps(rows))
    else:
        print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<30}OWNER")
        for r in rows:
            print(f"{r['id']:<20}{r['pid']:<10}{r['status']:<10}{r['bundle']:<40}"
                  f"{r['created']:<30}{r['owner']}")
    return 0


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
    import dataclasses

    from ..container._config_process import User, parse_process
    from ..container._reader import JsonObject, ignored_properties

    c = _load(root, cid)
    try:
        if args.get("process"):
            with open(args.get("process"), encoding="utf-8") as f:
                document = json.load(f)
            process = parse_process(JsonObject(document, "process"))
            _log_ignored(args.get("process"), ignored_properties(document, "process"))
        else:
            if not command:
                raise UsageError("exec: expected a command (or --process)")
            base = c.spec().process
            # runc: no terminal unless --tty (whatever config.json says).
            process = dataclasses.replace(base, args=tuple(command), rlimits=(),
                                          terminal=bool(args.get("tty")))
        if args.get("env"):
            process = dataclasses.replace(process, env=process.env + tuple(args.get("env")))
        if args.get("cwd"):
            process = dataclasses.replace(process, cwd=args.get("cwd"))
        if args.get("user"):
            uid, _, gid = args.get("user").partition(":")
            process = dataclasses.replace(process, user=User(int(uid), int(gid or 0)))
        if args.get("no-new-privs"):
            process = dataclasses.replace(process, no_new_privileges=True)
        console = _console_target(args, not args.get("detach"), lambda: process.terminal)
        if console and process.console_size is None:
            from ._relay import terminal_size

            # Relayed: the pty starts with our terminal's size.
            process = dataclasses.replace(process, console_size=terminal_size(0))
        term = None
        proc = None
        try:
            proc = c.exec_process(process, exec_id=f"cli-{os.getpid()}-{time.monotonic_ns()}",
                                  preserve_fds=_preserve_fds(args),
                                  console_socket=console[0] if console
                                  else args.get("console-socket"))
            if console:
                console[0].close()
                term = _receive(console[1])
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
                _write_pid_file(args.get("pid-file"), proc.pid)
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
            _release(proc, not args.get("detach"))
            proc.close()
    finally:
        c.close()


def cmd_ps(root: str, argv: Sequence[str]) -> int:
    args = parse(argv, {"format": "value", "help": "flag"}, {"f": "format", "h": "help"})
    if args.get("help"):
        print("usage: pidsafe-runc ps [--format table|json] ID")
        return 0
    c = _load(root, _one_id(args, "ps"))
    try:
        pids = c.pids()
    finally:
        c.close()
    if args.get("format") == "json":
        print(json.dumps(pids))
    else:
        print("PID")
        for p in pids:
            print(p)
    return 0


def cmd_features(root: str, argv: Sequence[str]) -> int:
    from ..container._config_process import CAPABILITIES
    from ..container._config_linux import NAMESPACE_TYPES

    doc = {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                  "poststop"],
        "mountOptions": sorted({
            "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "relatime",
            "noatime", "strictatime", "nodiratime", "diratime", "nosymfollow", "bind", "rbind",
            "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
            "runbindable", "idmap", "ridmap"}),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": sorted(CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": _seccomp_features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.pidsafe.pidfd": "init held by a pidfd from clone3"},
    }
    print(json.dumps(doc, indent=2))
    return 0


def _seccomp_features() -> Dict[str, Any]:
    """features' ``linux.seccomp``: what this build and this kernel can do."""
    from ..container._config_seccomp import ACTIONS, ARCHITECTURES, FLAGS, OPERATORS
    from .._sys import _seccomp as sc

    if not sc.available():
        return {"enabled": False}
    known = sorted(FLAGS)
    return {
        "enabled": True,
        "actions": sorted(a for a, v in ACTIONS.items() if sc.kernel_has_action(v)),
        "operators": sorted(OPERATORS),
        "archs": sorted(a for a in ARCHITECTURES
                        if sc.arch_token(a[len("SCMP_ARCH_"):].lower()) != 0),
        "knownFlags": known,
        "supportedFlags": [f for f in known if sc.kernel_has_flag(FLAGS[f])],
    }


def _cgroup_command(root: str, argv: Sequence[str], what: str) -> int:
    """pause, resume, update: the container's cgroup (see _runc_cgroup)."""
    from . import _runc_cgroup as more

    spec = {"help": "flag"}
    if what == "update":
        spec.update({name: "value" for name in more.UPDATE_OPTIONS})
    args = parse(argv, spec, {"r": "resources", "h": "help"} if what == "update"
                 else {"h": "help"})
    if args.get("help"):
        print({"pause": more.PAUSE_HELP, "resume": more.RESUME_HELP,
               "update": more.UPDATE_HELP}[what])
        return 0
    cid = _one_id(args, what)
    resources = more.update_resources(args) if what == "update" else None
    c = _load(root, cid)
    try:
        if what == "pause":
            c.pause()
        elif what == "resume":
            c.resume()
        else:
            c.update(resources)
            from ..container._reader import ignored_properties

            _log_ignored("--resources", ignored_properties(resources, "linux.resources"))
    finally:
        c.close()
    return 0


def cmd_pause(root: str, argv: Sequence[str]) -> int:
    return _cgroup_command(root, argv, "pause")


def cmd_resume(root: str, argv: Sequence[str]) -> int:
    return _cgroup_command(root, argv, "resume")


def cmd_update(root: str, argv: Sequence[str]) -> int:
    return _cgroup_command(root, argv, "update")


COMMANDS = {"pause": cmd_pause, "resume": cmd_resume, "update": cmd_update,
            "create": cmd_create, "start": cmd_start, "state": cmd_state, "kill": cmd_kill,
            "delete": cmd_delete, "list": cmd_list, "exec": cmd_exec, "ps": cmd_ps,
            "features": cmd_features}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = DEFAULT_ROOT
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].lstrip("-").partition("=")
        if name in ("root", "log", "log-format", "criu") and not eq:
            if i + 1 >= len(argv):
                return _fail(f"flag needs an argument: {argv[i]}")
            value = argv[i + 1]
            i += 1
        if name == "root":
            root = value
        elif name == "log":
            LOG.path = value
        elif name == "log-format":
            if value not in ("text", "json"):
                return _fail(f"--log-format must be text or json, not {value!r}")
            LOG.json = value == "json"
        elif name == "debug":
            LOG.debug = True
        elif name == "systemd-cgroup":
            return _fail("--systemd-cgroup is not supported: pidsafe-runc manages cgroupfs "
                         "directly")
        elif name in ("v", "version"):
            from .._version import __version__

            print(f"pidsafe-runc version {__version__}\nspec: 1.1.0")
            return 0
        elif name in ("h", "help"):
            print(USAGE)
            return 0
        elif name in ("rootless", "criu"):
            pass
        else:
            return _fail(f"flag provided but not defined: {argv[i]}")
        i += 1
    if i >= len(argv):
        print(USAGE)   # as runc: no command shows the help
        return 0
    cmd, rest = argv[i], argv[i + 1:]
    if cmd in ("help", "h"):
        if not rest:
            print(USAGE)
            return 0
        cmd, rest = rest[0], ["--help"]
    if cmd == "run":
        fn: Any = lambda r, a: cmd_create(r, a, run=True)   # noqa: E731
    else:
        fn = COMMANDS.get(cmd)
    if fn is None:
        LOG.write("error", f"No help topic for {cmd!r}\n{USAGE}")
        return 3   # runc's status for an unknown command
    try:
        return int(fn(root, rest))
    except UsageError as exc:
        return _fail(str(exc))
    except (Error, OSError, ValueError, LookupError, RuntimeError) as exc:
        # Error: pidsafe's own, e.g. TimeoutExpired when delete waits for an
        # init whose parent (the shim) does not reap it.
        return _fail(str(exc))


def _fail(msg: str) -> int:
    LOG.write("error", msg)
    return 1


def entry() -> NoReturn:
    sys.exit(main())
