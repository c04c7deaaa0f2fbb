"""spawn(): start a program as a child held by a pidfd from birth.

The parent does all the work that can fail or allocate (argument encoding,
the PATH search, pipes, fd lists) before the clone; the child (csrc/native/spawn.c)
only moves fds, changes directory and execs.  The clone, and the child's
``{stage, errno}`` failure record, are the process layer's one child-start
path (:func:`._start.start_process`).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from functools import partial
from typing import IO, TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Set, Union

from .. import _sys
from ..userns import IDMapLike, Namespace
from ._start import start_process
from ._plan import PLAIN, SpawnPlan, plan_spawn
from .._sigsafe import hand_out
from . import _abandoned
from ._abandoned import reap_abandoned
from ._process import Process
from ._undo import discard
from ._stdio import open_pipe_files, stdio_fd

if TYPE_CHECKING:
    from ._stdio import StdioArg
    from ._text import TextMode

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

#: What os.fsencode() uses, for the str arguments it would encode.
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
#: str.encode as os.fsencode() does it, for mapping over a list of str.
_encode_str = partial(str.encode, encoding=_FS_ENCODING, errors=_FS_ERRORS)


def _encode(value: StrOrBytesPath, what: str) -> bytes:
    try:
        b = os.fsencode(value)
    except TypeError:
        raise TypeError(f"{what} must be str, bytes or os.PathLike, "
                        f"not {type(value).__name__}: {value!r}") from None
    if b"\0" in b:
        raise ValueError(f"{what} contains a NUL byte: {value!r}")
    return b


def _encode_env(env: Mapping[Any, Any]) -> List[bytes]:
    out = []
    for k, v in env.items():
        kb = _encode(k, "env key")
        if not kb or b"=" in kb:
            raise ValueError(f"illegal environment variable name: {k!r}")
        out.append(kb + b"=" + _encode(v, f"env[{k!r}]"))
    return out


def _exec_paths(executable: bytes, env: Optional[Mapping[Any, Any]]) -> List[bytes]:
    """The candidates the child tries, in order: execvpe(3)'s PATH search."""
    if b"/" in executable:
        return [executable]
    if env is not None:
        # Look PATH up in the child's environment, as execvpe would.
        path_env: Mapping[Any, Any] = {os.fsdecode(k): v for k, v in env.items()}
    else:
        path_env = os.environ
    return [os.path.join(os.fsencode(d), executable) for d in os.get_exec_path(path_env)]




#: ``spawn(namespaces=)``'s default, told apart by identity on the hot path.
_NO_NAMESPACES = Namespace(0)


def _check_open(fd: int, what: str) -> None:
    """Raise ``OSError(EBADF)`` naming ``what`` unless ``fd`` is open.

    Checked before spawn() opens any fd of its own: a closed number could
    otherwise be reused by our pipes and reach the child in their place.
    """
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as exc:
        raise _sys.make_oserror(exc.errno or errno.EBADF, f"{what}: fd {fd}") from None


def spawn(args: Union[StrOrBytesPath, Sequence[StrOrBytesPath]], *,
          executable: Optional[StrOrBytesPath] = None,
          env: Optional[Mapping[Any, Any]] = None,
          cwd: Optional[StrOrBytesPath] = None,
          stdin: StdioArg = None, stdout: StdioArg = None, stderr: StdioArg = None,
          pass_fds: Sequence[int] = (), close_fds: bool = True,
          start_new_session: bool = False, pdeathsig: Optional[int] = None,
          restore_signals: bool = True, bufsize: Optional[int] = -1,
          text: Optional[bool] = None, encoding: Optional[str] = None,
          errors: Optional[str] = None, universal_newlines: Optional[bool] = None,
          userns: Any = None, uidmap: Optional[IDMapLike] = None,
          gidmap: Optional[IDMapLike] = None,
          namespaces: Union[Namespace, int] = _NO_NAMESPACES) -> Process:
    """Start a program as a child held by a pidfd from the moment it exists.

    The child comes from ``clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK)`` on a
    private stack: pid and pidfd are created together, and the cost does not
    grow with the caller's memory.  Arguments follow ``subprocess.Popen``.

    Args:
        args: the program and its arguments (a lone str/bytes/path is the
            program with no arguments).  ``args[0]`` is searched in ``PATH``
            (of ``env`` if given) unless it contains a slash.
        executable: run this file instead of ``args[0]`` (which still
            becomes the child's ``argv[0]``).
        env: the child's environment; ``None`` inherits ours.
        cwd: the child's working directory.
        stdin, stdout, stderr: ``None`` (inherit), an fd, a file object,
            ``subprocess.PIPE``, ``subprocess.DEVNULL``; ``stderr`` also
            takes ``subprocess.STDOUT``.
        pass_fds: extra fds the child keeps (at the same numbers).
        close_fds: close every other fd >= 3 in the child (default).  With
            ``False`` the child also inherits our non-close-on-exec fds.
        start_new_session: ``setsid()`` in the child.
        pdeathsig: signal the child gets when the *thread* that spawned it
            exits (``PR_SET_PDEATHSIG``: the kernel tracks the parent thread,
            not the process; spawn from a long-lived thread).  If the parent
            is already gone when the child sets it, the child does not start.
        restore_signals: reset ``SIGPIPE`` and ``SIGXFSZ`` (which Python
            ignores) to their defaults in the child, like ``Popen``.
        bufsize: buffering for the ``stdin``/``stdout``/``stderr`` pipes, as
            ``Popen``'s (``None``: the default; ``1``: line-buffered stdin in
            text mode).
        text, encoding, errors, universal_newlines: text mode, as ``Popen``
            has it: when any is true, the pipes are ``io.TextIOWrapper``
            text streams (universal newlines when reading) and
            ``communicate()`` takes and returns ``str``.  ``encoding``
            defaults to the locale's; ``universal_newlines`` is the old
            name of ``text``.
        userns: a user namespace (an :class:`OwnedFd` from
            :func:`pidsafe.get_userns_fd`, or any object with ``fileno()``)
            for the child to join before anything else.
        uidmap, gidmap: make a new user namespace with these maps for the
            child (both or neither; not with ``userns``); ``setgroups`` is
            ``"deny"`` in it.  In a joined or new user namespace the child
            runs as its uid/gid 0 if the maps give it one.
        namespaces: :class:`pidsafe.Namespace` flags: new mount, pid, net,
            uts, ipc, cgroup namespaces for the child (owned by its user
            namespace when it has one; NEWPID not with ``userns``).

    Returns:
        A :class:`pidsafe.Process`; its exit is never lost, even if the child
        exits before ``spawn()`` returns.

    Raises:
        FileNotFoundError, PermissionError, ...: the program could not be
            executed (``filename`` is the program), or ``cwd`` could not be
            entered (``filename`` is ``cwd``).  The message names the stage.
        UnsupportedError: the kernel lacks clone3 or CLONE_PIDFD.
        ValueError, TypeError: bad arguments; nothing was started.
        LookupError: no such ``encoding`` or ``errors`` handler; nothing
            was started.
        pidsafe.HelperDiedError: the child was killed (and reaped) before
            its new user namespace's maps could be written.
    """
    # ---- validate and encode everything before anything is created --------
    # The hot path of every spawn: a list or tuple of str is the common
    # case, tested first (os.PathLike is an ABC, whose isinstance() runs
    # Python code); the messages are only built on error.
    if type(args) is list or type(args) is tuple:
        arg_list: List[StrOrBytesPath] = list(args)
    elif isinstance(args, (str, bytes, os.PathLike)):
        arg_list = [args]
    else:
        arg_list = list(args)
    if not arg_list:
        raise ValueError("args must name a program: got an empty sequence")
    try:
        try:
            argv = [*map(_encode_str, arg_list)]   # all str: encoded in C, no frame
        except TypeError:
            argv = [a.encode(_FS_ENCODING, _FS_ERRORS) if type(a) is str else os.fsencode(a)
                    for a in arg_list]
        bad = b"\0" in b"".join(argv)
    except TypeError:
        bad = True
    if bad:
        argv = [_encode(a, f"args[{i}]") for i, a in enumerate(arg_list)]
    exe_arg = arg_list[0] if executable is None else executable
    exe = argv[0] if executable is None else _encode(executable, "executable")
    envp = _encode_env(env) if env is not None else None
    cwd_b = _encode(cwd, "cwd") if cwd is not None else None
    exec_paths = _exec_paths(exe, env)
    if not exec_paths:
        raise FileNotFoundError(errno.ENOENT, "exec: PATH is empty", exe_arg)

    keep: Set[int] = set()
    for fd in pass_fds or ():
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise ValueError(f"pass_fds: {fd!r} is not a file descriptor")
        if fd >= 3:
            _check_open(fd, "pass_fds")
            keep.add(fd)
    sig = 0
    if pdeathsig is not None:
        if not isinstance(pdeathsig, int) or isinstance(pdeathsig, bool):
            raise TypeError(f"pdeathsig must be a signal number, got {pdeathsig!r}")
        sig = int(pdeathsig)
        if not 0 < sig < signal.NSIG:
            raise ValueError(f"pdeathsig: {pdeathsig!r} is not a signal number")
    inherit_stdio = stdin is None and stdout is None and stderr is None
    if not inherit_stdio:
        if stderr is STDOUT and stdout is STDOUT:
            raise ValueError("stdout cannot be subprocess.STDOUT")
        if stdin is STDOUT or stdout is STDOUT:
            raise ValueError("only stderr can be subprocess.STDOUT")
    if bufsize is None:
        bufsize = -1
    elif type(bufsize) is not int and (not isinstance(bufsize, int)
                                       or isinstance(bufsize, bool)):
        raise TypeError(f"bufsize must be an int, got {bufsize!r}")
    if text is None and encoding is None and errors is None and universal_newlines is None:
        text_as: Optional[TextMode] = None
    else:
        from ._text import text_mode

        text_as, bufsize = text_mode(text, universal_newlines, encoding, errors, bufsize)
    caller_fds = {}
    if not inherit_stdio:
        for i, (value, name) in enumerate(((stdin, "stdin"), (stdout, "stdout"),
                                           (stderr, "stderr"))):
            if not (value is None or value is PIPE or value is DEVNULL or value is STDOUT):
                caller_fds[i] = stdio_fd(value, name)
                _check_open(caller_fds[i], name)

    if (userns is None and uidmap is None and gidmap is None
            and (namespaces is _NO_NAMESPACES
                 or type(namespaces) in (Namespace, int) and namespaces == 0)):
        plan = PLAIN
    else:
        plan = plan_spawn(userns, uidmap, gidmap, namespaces)

    if _abandoned.registry:
        reap_abandoned()

    # Everything below runs in one critical section: a signal handler that
    # raises is held back until every fd and the child have an owner (the
    # Process, or the cleanup of the error being raised).
    # (A partial, not a lambda: no closure over spawn()'s locals, no frame.)
    return hand_out(partial(
        _start, args, exe_arg, cwd, exec_paths, argv, envp, cwd_b, (stdin, stdout, stderr),
        inherit_stdio, caller_fds, keep, close_fds, start_new_session, sig,
        restore_signals, bufsize, plan, text_as), discard)


def _start(args: Any, exe_arg: Any, cwd: Any, exec_paths: List[bytes], argv: List[bytes],
           envp: Optional[List[bytes]], cwd_b: Optional[bytes], stdio: Sequence[StdioArg],
           inherit_stdio: bool, caller_fds: Dict[int, int], keep: Set[int], close_fds: bool,
           start_new_session: bool, sig: int, restore_signals: bool, bufsize: int,
           plan: SpawnPlan, text_as: Optional[TextMode]) -> Process:
    """spawn()'s clone sequence, inside a critical section; see spawn()."""
    # ---- fds: everything we create is closed on every path ----------------
    to_close: List[int] = []   # child-side ends, closed in the parent after the clone
    parent_ends = [-1, -1, -1]  # our ends of PIPEs, closed only on failure
    devnull = -1
    files: List[Optional[IO[Any]]] = [None, None, None]
    try:
        child_fds = [-1, -1, -1]
        for i, value in enumerate(() if inherit_stdio else stdio):
            if value is None:
                continue
            if value is PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                if i == 0:
                    child_fds[0], parent_ends[0] = r, w
                    to_close.append(r)
                else:
                    child_fds[i], parent_ends[i] = w, r
                    to_close.append(w)
            elif value is DEVNULL:
                if devnull < 0:
                    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    to_close.append(devnull)
                child_fds[i] = devnull
            elif value is STDOUT:
                child_fds[2] = child_fds[1] if child_fds[1] >= 0 else 1
            else:
                child_fds[i] = caller_fds[i]

        # By position, in ChildSpec's field order: a Record's quickest
        # construction (keywords cost three times as much on this hot path).
        spec = _sys.ChildSpec(
            tuple(exec_paths),                              # exec_paths
            tuple(argv),                                    # argv
            -1,                                             # errpipe_write
            -1,                                             # exec_fd
            tuple(envp) if envp is not None else None,      # envp
            cwd_b,                                          # cwd
            (child_fds[0], child_fds[1], child_fds[2]),     # stdio
            tuple(sorted(keep)) if keep else (),            # keep_fds
            bool(close_fds),                                # close_fds
            bool(start_new_session),                        # new_session
            sig,                                            # pdeathsig
            bool(restore_signals),                          # restore_signals
            plan.clone_flags,                               # clone_flags
            -1,                                             # cgroup_fd
            (),                                             # tasks_fds
            plan.helper)                                    # helper
        filenames = {_sys.STAGE_EXEC: exe_arg}
        if cwd is not None:
            filenames[_sys.STAGE_CHDIR] = cwd
        proc = start_process(spec, maps=plan.maps, args=args,
                             unsupported="spawn needs clone3 with a child stack",
                             filenames=filenames)
        try:
            # CLONE_VFORK: the child has exec'd: its ends of the pipes are
            # ours to close.
            while to_close:
                os.close(to_close.pop())
            if parent_ends != [-1, -1, -1]:
                # open_pipe_files() owns our ends from here, on failure too.
                ends, parent_ends = parent_ends, [-1, -1, -1]
                files = list(open_pipe_files(ends, ("wb", "rb", "rb"), bufsize))
                if text_as is not None:
                    from ._text import wrap_pipes

                    files = wrap_pipes(files, text_as)
                proc.stdin, proc.stdout, proc.stderr = files
        except BaseException:
            # Started, but we cannot hand it out: killed and reaped through
            # its pidfd, so no zombie and no fd is left behind.
            discard(proc)
            raise
        return proc
    except BaseException:
        for f in files:
            if f is not None:
                f.close()
        for fd in to_close + parent_ends:
            if fd >= 0:
                os.close(fd)
        raise
