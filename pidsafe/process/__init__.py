"""pidsafe.process: see DESIGN.md, "Layers".

For users (re-exported by :mod:`pidsafe`): :class:`Process`,
:class:`ProcessIdentity`, :func:`spawn` with ``PIPE``, ``DEVNULL`` and
``STDOUT``.

For the layers above: :func:`hand_out` and :func:`discard` (a start that
may fail, with nothing left behind); :func:`stdio_fd` and
:func:`open_pipe_files` (a child's stdio arguments); the reaper's view of a
process: the lease states ``LEASE_*``, :func:`handle_holds` and
:func:`handle_fds` (which pidfds the open handles hold) and
:func:`waitid_returncode`.

Imported on first use (pidsafe/_lazy.py): pidsafe-runc's start, state, kill
and delete hold a :class:`Process` and never load spawn()'s machinery.
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._identity import ProcessIdentity
    from ._lease import LEASE_BUSY, LEASE_REAPED, LEASE_RUNNING, handle_fds, handle_holds
    from ._process import Process, discard, hand_out, waitid_returncode
    from ._spawn import DEVNULL, PIPE, STDOUT, spawn
    from ._stdio import open_pipe_files, stdio_fd

__getattr__, __dir__ = _lazy.exports(__name__, {
    "DEVNULL": "._spawn",
    "LEASE_BUSY": "._lease",
    "LEASE_REAPED": "._lease",
    "LEASE_RUNNING": "._lease",
    "PIPE": "._spawn",
    "Process": "._process",
    "ProcessIdentity": "._identity",
    "STDOUT": "._spawn",
    "discard": "._process",
    "hand_out": "._process",
    "handle_fds": "._lease",
    "handle_holds": "._lease",
    "open_pipe_files": "._stdio",
    "spawn": "._spawn",
    "stdio_fd": "._stdio",
    "waitid_returncode": "._process",
})

__all__ = ["DEVNULL", "LEASE_BUSY", "LEASE_REAPED", "LEASE_RUNNING", "PIPE", "Process",
           "ProcessIdentity", "STDOUT", "discard", "hand_out", "handle_fds", "handle_holds",
           "open_pipe_files", "spawn", "stdio_fd", "waitid_returncode"]
