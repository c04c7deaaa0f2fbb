"""The static helper programs pidsafe execs: the one place that says what is exec'd.

``pidsafe-helper`` (csrc/helper/: credentials for ``spawn(uidmap=,
userns=)``) and ``pidsafe-init`` (csrc/init/: a container's init) are built
next to the extension, into ``pidsafe/_libexec/`` (setup.py).  Nothing
else computes their location or decides what ``execve()`` is given for
them: callers ask :func:`program` and exec its :attr:`Program.exec_path`,
an opaque path.  Today that is the installed file itself; the locator may
hand out something else without any caller changing (a sealed copy's
``/proc/self/fd/N``, say, so that no process a container can see runs from
a writable host binary).
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
        exec_path: what ``execve()`` is to be given: opaque to callers
            (today the installed file).
    """

    name: str
    path: str
    exec_path: bytes


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
