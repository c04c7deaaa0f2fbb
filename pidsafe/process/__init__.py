"""pidsafe.process: a layer of pidsafe (see "Layout" in README.md).

For users (re-exported by :mod:`pidsafe`): :class:`Process`,
:class:`ProcessIdentity`, :func:`spawn` with ``PIPE``, ``DEVNULL`` and
``STDOUT``; :func:`run` and its :class:`CompletedProcess` (``subprocess.run``);
:func:`create_subprocess_exec`, :func:`create_subprocess_shell` and their
:class:`AsyncProcess` (``asyncio.subprocess``).

For the layers above: :func:`start_process` (the one child-start path:
start a child from a :class:`pidsafe._sys.ChildSpec`, held by a
:class:`Process` from its start; a container's init starts this way);
:func:`discard` (undo a start that is failing, with nothing left behind); :func:`stdio_fd` and :func:`open_pipe_files` (a
child's stdio arguments); the reaper's view of a process: a
:class:`PidfdLease` on a child it watches and its states ``LEASE_*``,
:func:`handle_holds` and :func:`handle_fds` (which pidfds the open handles
hold) and :func:`waitid_returncode`.

Imported on first use (pidsafe/_lazy.py): pidsafe-runc's start, state, kill
and delete hold a :class:`Process` and never load spawn()'s machinery.
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._asyncio import AsyncProcess, create_subprocess_exec, create_subprocess_shell
    from ._start import start_process
    from ._identity import ProcessIdentity
    from ._lease import (LEASE_BUSY, LEASE_REAPED, LEASE_RUNNING, PidfdLease, handle_fds,
                         handle_holds)
    from ._process import Process
    from ._run import CompletedProcess, run
    from ._wait import waitid_returncode
    from ._spawn import DEVNULL, PIPE, STDOUT, spawn
    from ._stdio import open_pipe_files, stdio_fd
    from ._undo import discard

__getattr__, __dir__ = _lazy.exports(__name__, {
    "AsyncProcess": "._asyncio",
    "CompletedProcess": "._run",
    "DEVNULL": "._spawn",
    "LEASE_BUSY": "._lease",
    "LEASE_REAPED": "._lease",
    "LEASE_RUNNING": "._lease",
    "PIPE": "._spawn",
    "PidfdLease": "._lease",
    "Process": "._process",
    "ProcessIdentity": "._identity",
    "STDOUT": "._spawn",
    "create_subprocess_exec": "._asyncio",
    "create_subprocess_shell": "._asyncio",
    "discard": "._undo",
    "handle_fds": "._lease",
    "handle_holds": "._lease",
    "open_pipe_files": "._stdio",
    "run": "._run",
    "spawn": "._spawn",
    "start_process": "._start",
    "stdio_fd": "._stdio",
    "waitid_returncode": "._wait",
})

__all__ = ["AsyncProcess", "CompletedProcess", "DEVNULL", "LEASE_BUSY", "LEASE_REAPED",
           "LEASE_RUNNING", "PIPE", "PidfdLease", "Process", "ProcessIdentity", "STDOUT",
           "create_subprocess_exec", "create_subprocess_shell", "discard", "handle_fds",
           "handle_holds", "open_pipe_files", "run", "spawn", "start_process", "stdio_fd",
           "waitid_returncode"]
