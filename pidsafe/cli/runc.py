"""``pidsafe-runc``: runc's command line on top of :class:`pidsafe.Container`.

Anything that speaks runc's CLI (containerd's runc shim, the OCI
validation suite, scripts) can run pidsafe instead, with init held by a
pidfd from birth.  There is no second implementation: every command is a
call into :mod:`pidsafe.container`.

Every command is a new interpreter (three or four per container
lifecycle), so this module is only the dispatcher: global flags, the
argument parser, the log, and :data:`COMMANDS`, whose entries import their
command's module when they run.  ``start``, ``state``, ``kill``,
``delete``, ``list``, ``ps``: ``_runc_ops``; ``create``, ``run``:
``_runc_create``; ``exec``: ``_runc_exec`` (both with ``_runc_process``);
``pause``, ``resume``, ``update``: ``_runc_cgroup``; ``features``:
``_runc_features``.  tests/cli/test_runc_imports.py keeps each command to
what it uses.

Exit status: 0, or 1 with the error on stderr and, with ``--log``, as the
last line of the log file (``--log-format json``: one object a line, as
containerd's shim reads it).
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import Error

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence

    from .. import _lite
    from ..errors import UsageError

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


class _Log:
    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.json = False
        self.debug = False

    def write(self, level: str, msg: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.path:
            from .. import _lite

            if self.json:
                line = _lite.dumps({"level": level, "msg": msg, "time": stamp})
            else:
                line = f'time="{stamp}" level={level} msg={_lite.dumps(msg)}'
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
            sys.stderr.write(f"pidsafe-runc: {level}: {msg}\n" if level in ("warning", "debug")
                             else f"pidsafe-runc: {msg}\n")


LOG = _Log()


def log_hook_warnings(c: Any) -> None:
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


def log_debug() -> None:
    """``--debug``: pidsafe's debug log (``logging.getLogger("pidsafe")``: what it
    creates and undoes) to ``--log`` and stderr.

    Only then is :mod:`logging` imported: without it pidsafe's debug calls
    cost a dict lookup (pidsafe/_log.py).  Warnings keep their own way
    (:func:`log_hook_warnings`).
    """
    import logging

    class ToLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            LOG.write("debug", f"{record.name}: {record.getMessage()}")

    logger = logging.getLogger("pidsafe")
    logger.setLevel(logging.DEBUG)
    if not any(type(h).__name__ == "ToLog" for h in logger.handlers):
        handler = ToLog(logging.DEBUG)
        handler.addFilter(lambda record: record.levelno < logging.WARNING)
        logger.addHandler(handler)


def ignoring_config_warnings() -> "_lite.ignoring_warnings":
    """A context in which :class:`pidsafe.IgnoredConfigWarning` is not shown:
    pidsafe-runc logs each ignored property itself (:func:`log_ignored`).

    :mod:`warnings` is not imported for it (``_lite.ignoring_warnings``):
    create warns only for a config.json with something to ignore.
    """
    from .. import _lite
    from ..errors import IgnoredConfigWarning

    return _lite.ignoring_warnings(IgnoredConfigWarning)


def log_ignored(what: str, paths: Sequence[str]) -> None:
    """A warning for each property of ``what`` that pidsafe ignored (runtime-spec
    "Extensibility": a runtime MAY log unknown properties and MUST ignore them)."""
    if not paths:
        return
    from ..container import OTHER_PLATFORMS

    for path in paths:
        why = ("a section for another platform" if path in OTHER_PLATFORMS
               else "runtime-spec does not define it (a misspelt field?)")
        LOG.write("warning", f"{what}: {path} ignored: {why}")


# --- argument parsing: runc's flag spelling (-x, --long, --long=value) ---------

def usage_error(msg: str) -> UsageError:
    """A :class:`pidsafe.UsageError` saying ``msg``, to raise.

    Its module (``pidsafe.errors._frontends``, with the shim's wire errors:
    four exception classes) is imported only for a wrong command line: a
    class is costly to make, and start and delete never raise it.
    """
    from ..errors import UsageError

    return UsageError(msg)


def __getattr__(name: str) -> Any:
    """``UsageError``, still a name of this module (PEP 562), imported on first read."""
    if name == "UsageError":
        from ..errors import UsageError

        return UsageError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Args:
    """Parsed options of one command: ``flags`` by long name, then the
    positional arguments in order."""

    def __init__(self, flags: Dict[str, Any], positional: List[str]) -> None:
        self.flags = flags
        self.positional = positional

    def get(self, name: str, default: Any = None) -> Any:
        return self.flags.get(name, default)


def parse(argv: Sequence[str], spec: Dict[str, str], aliases: Dict[str, str], *,
          stop_after: Optional[int] = None) -> Args:
    """runc's flag spelling (``-x``, ``--long``, ``--long=value``, ``--long value``).

    ``spec``: option -> "flag" | "value" | "list"; ``aliases``: short -> long.
    As runc (urfave/cli), flags may come after positional arguments too
    (``delete ID --force``), and ``--`` ends the flags: every argument after
    it is positional (``create --bundle B -- ID``).  ``stop_after=N`` ends
    the flags after the N-th positional argument as well: ``exec ID CMD
    ARGS...`` (runc's ``StopOnNthArg``), whose command's own flags (``sh -c
    X``) are its, not ours.

    Raises:
        UsageError: a flag that is not in ``spec``, or one without its value.
    """
    flags: Dict[str, Any] = {}
    positional: List[str] = []
    argv = list(argv)
    i = 0
    while i < len(argv):
        a = argv[i]
        if stop_after is not None and len(positional) >= stop_after:
            positional += argv[i:]
            break
        if a == "--":
            positional += argv[i + 1:]
            break
        if not a.startswith("-") or a == "-":
            positional.append(a)
            i += 1
            continue
        name, eq, value = a.lstrip("-").partition("=")
        name = aliases.get(name, name)
        kind = spec.get(name)
        if kind is None:
            raise usage_error(f"flag provided but not defined: {a}")
        if kind == "flag":
            flags[name] = value.lower() not in ("false", "0") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise usage_error(f"flag needs an argument: {a}")
                value = argv[i]
            if kind == "list":
                flags.setdefault(name, []).append(value)
            else:
                flags[name] = value
        i += 1
    return Args(flags, positional)


def parse_or_help(argv: Sequence[str], usage: str, spec: Optional[Dict[str, str]] = None,
                  aliases: Optional[Dict[str, str]] = None, *,
                  stop_after: Optional[int] = None) -> Optional[Args]:
    """:func:`parse` for a command, with its ``-h``/``--help``: ``None`` once
    ``usage`` is printed (the command then exits 0, as runc's do)."""
    args = parse(argv, {**(spec or {}), "help": "flag"}, {**(aliases or {}), "h": "help"},
                 stop_after=stop_after)
    if args.get("help"):
        print(usage)
        return None
    return args


def one_id(args: Args, cmd: str) -> str:
    if len(args.positional) != 1:
        raise usage_error(f"{cmd}: expected exactly one container id, got "
                          f"{len(args.positional)}")
    return args.positional[0]


def load(root: str, cid: str) -> Any:
    """The container whose id is exactly ``cid`` under ``root``.

    Never a prefix match: a script's ``delete --force web`` must not reach
    ``web2`` once ``web`` is gone (runc takes exact ids too).
    """
    from ..container import Container

    return Container.load(root, cid)


def parse_signal(text: str) -> int:
    """``15``, ``TERM`` or ``SIGTERM`` (runc's spellings)."""
    from .. import _lite

    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = _lite.signal_number(name)
    if number is None:
        raise usage_error(f"unknown signal {text!r}")
    return number


#: A command: ``(state root, its arguments) -> exit status``.
if TYPE_CHECKING:
    Command = Callable[[str, Sequence[str]], int]


def _command(module: str, name: str) -> Command:
    """The command ``name`` of ``pidsafe.cli.<module>``, imported only when it runs."""
    def run(root: str, argv: Sequence[str]) -> int:
        mod = __import__(f"{__package__}.{module}", fromlist=[name])
        return int(getattr(mod, name)(root, argv))

    run.__name__ = run.__qualname__ = name
    return run


#: Each command by name (tests replace entries).
COMMANDS: Dict[str, Command] = {
    "create": _command("_runc_create", "cmd_create"),
    "run": _command("_runc_create", "cmd_run"),
    "exec": _command("_runc_exec", "cmd_exec"),
    **{cmd: _command("_runc_ops", f"cmd_{cmd}")
       for cmd in ("start", "state", "kill", "delete", "list", "ps")},
    **{cmd: _command("_runc_cgroup", f"cmd_{cmd}") for cmd in ("pause", "resume", "update")},
    "features": _command("_runc_features", "cmd_features"),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = DEFAULT_ROOT
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].lstrip("-").partition("=")
        if name in ("root", "log", "log-format", "criu", "rootless") and not eq:
            # runc's value flags take the next argument (--rootless too:
            # `--rootless false list` is not the command "false").
            if i + 1 >= len(argv):
                return _fail(f"flag needs an argument: {argv[i]}")
            value = argv[i + 1]
            i += 1
        off = bool(eq) and value.lower() in ("false", "0")   # a boolean flag given "=false"
        if name == "root":
            root = value
        elif name == "log":
            LOG.path = value
        elif name == "log-format":
            if value not in ("text", "json"):
                return _fail(f"--log-format must be text or json, not {value!r}")
            LOG.json = value == "json"
        elif name == "debug":
            LOG.debug = not off
        elif name == "systemd-cgroup":
            if not off:
                return _fail("--systemd-cgroup is not supported: pidsafe-runc manages "
                             "cgroupfs directly")
        elif name in ("v", "version"):
            from .._version import __version__

            print(f"pidsafe-runc version {__version__}\nspec: 1.1.0")
            return 0
        elif name in ("h", "help"):
            print(USAGE)
            return 0
        elif name == "rootless":
            if value not in ("true", "false", "auto"):
                return _fail(f"--rootless must be true, false or auto, not {value!r}")
        elif name == "criu":
            pass   # no checkpoint/restore here: where criu is does not matter
        else:
            return _fail(f"flag provided but not defined: {argv[i]}")
        i += 1
    if LOG.debug:
        log_debug()
    if i >= len(argv):
        print(USAGE)   # as runc: no command shows the help
        return 0
    cmd, rest = argv[i], argv[i + 1:]
    if cmd in ("help", "h"):
        if not rest:
            print(USAGE)
            return 0
        cmd, rest = rest[0], ["--help"]
    fn = COMMANDS.get(cmd)
    if fn is None:
        LOG.write("error", f"No help topic for {cmd!r}\n{USAGE}")
        return 3   # runc's status for an unknown command
    try:
        return int(fn(root, rest))
    except (Error, OSError, ValueError, LookupError, RuntimeError) as exc:
        # Error: pidsafe's own (UsageError among them), e.g. TimeoutExpired
        # when delete waits for an init whose parent (the shim) does not
        # reap it.  Its notes too: what else failed while undoing.
        return _fail("; ".join([str(exc), *getattr(exc, "__notes__", ())]))


def _fail(msg: str) -> int:
    LOG.write("error", msg)
    return 1


def entry() -> NoReturn:
    """The script's entry point: :func:`main`, then exit without finalizing.

    A command's work is done when :func:`main` returns: what it owns (fds,
    flocks, pidfds) the kernel gives back at exit, and nothing of pidsafe
    registers ``atexit`` handlers or runs non-daemon threads.  Tearing down
    the interpreter (every module's dict, the garbage collector's last
    passes) is then 2-3 ms of each command for nothing; ``os._exit`` skips
    it once stdout and stderr are flushed.  A flush that fails (a closed
    pipe) leaves the exit to the interpreter, which reports it (status 120)
    as it always did; so does an exception out of :func:`main`.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        sys.exit(code)
    os._exit(code)
