"""The static helper programs pidsafe execs: the one place that says what is exec'd.

``pidsafe-helper`` (csrc/helper/: credentials for ``spawn(uidmap=,
userns=)``) and ``pidsafe-init`` (csrc/init/: a container's init) are built
next to the extension, into ``pidsafe/_libexec/`` (setup.py).  Nothing
else computes their location or decides what ``execve()`` is given for
them: callers ask :func:`program` and exec :meth:`Program.exec_fd`.

That is never the installed file: it is a sealed memfd copy of it
(:mod:`._sealed`), exec'd by fd, so that no process a container can see
(``/proc/PID/exe``, a ``#!/proc/self/exe`` script) runs from a binary
anybody could write (CVE-2019-5736).
"""

from __future__ import annotations

import errno
import os

from .._value import Record

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict

#: The installed programs' folder (pidsafe/_libexec/).
LIBEXEC: str = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "_libexec")
#: The programs pidsafe builds and execs.
NAMES = ("pidsafe-helper", "pidsafe-init")


class Program(Record):
    """One of pidsafe's static helper programs, ready to be exec'd.

    Attributes:
        name: ``"pidsafe-helper"`` or ``"pidsafe-init"``.
        path: the installed file, for messages.
        exec_path: the installed file as bytes: the ``argv[0]`` to give it,
            and a name for messages; never what is exec'd (see
            :meth:`exec_fd`).
    """

    name: str
    path: str
    exec_path: bytes

    def exec_fd(self) -> int:
        """What to exec: the fd of a sealed copy of the program
        (``ChildSpec.exec_fd``: ``execveat(fd, "", AT_EMPTY_PATH)``).

        Made on first use and kept for the life of the process (close-on-
        exec, this module's: never close it).

        Raises:
            OSError: the installed file cannot be read or copied.
        """
        from ._sealed import sealed_copy

        return sealed_copy(self.path)


_found: Dict[str, Program] = {}


def installed_path(name: str) -> str:
    """Where ``name`` is installed (whether or not it is there).

    Raises:
        ValueError: ``name`` is not one of pidsafe's programs.
    """
    if name not in NAMES:
        raise ValueError(f"{name!r} is not one of pidsafe's programs {NAMES}")
    return os.path.join(LIBEXEC, name)


def program(name: str) -> Program:
    """What to exec for pidsafe's program ``name``.

    Found once per process; a missing program is looked for again at the
    next call (an install may complete meanwhile).

    Raises:
        FileNotFoundError: the program is not installed, or not executable
            (pip builds it; a source tree without a build has none).
        ValueError: ``name`` is not one of pidsafe's programs.
    """
    found = _found.get(name)
    if found is not None:
        return found
    path = installed_path(name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(errno.ENOENT, f"{name} is missing: reinstall pidsafe", path)
    return _found.setdefault(name, Program(name, path, os.fsencode(path)))
