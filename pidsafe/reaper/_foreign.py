"""Subreaper mode and children pidsafe did not start: say it loudly.

A subreaper-mode reaper reaps every child of this process that no pidfd
holds, because it cannot tell an orphan reparented to it from a child that
``subprocess``, ``os.fork``, ``os.posix_spawn`` or ``os.system`` started in
this very process (both are children with exit signal ``SIGCHLD``; the
kernel keeps no trace of where a child came from).  Such a child's own
waiter then finds nothing: ``os.waitpid`` raises ``ChildProcessError`` and
``Popen.wait()`` *returns 0*, whatever the real status (Popen's rule for
``ECHILD``).  A :class:`pidsafe.Claim` opened before the start is the fix.

So that this never happens silently, an audit hook (PEP 578) watches for
those starts while a subreaper-mode reaper runs and no claim is pending, and
warns with :class:`pidsafe.ForeignChildWarning` at the caller's line.  With
``-W error::pidsafe.ForeignChildWarning`` (or ``filterwarnings = error``)
the start is refused instead: the exception leaves the audit hook, so the
call raises before any child exists.

The hook is installed once (audit hooks cannot be removed) and costs one
set look-up per audited event.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any, Protocol, Tuple

from ..errors import ForeignChildWarning

#: Audit events that start a child of this process outside pidsafe.
_STARTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn",
                     "os.system", "os.spawn"})
#: Modules whose frames are the start machinery, not the caller's line.
_MACHINERY = ("subprocess", "os", "pty", "asyncio.", "multiprocessing.", "concurrent.",
              "pidsafe.reaper._foreign")


class _Book(Protocol):
    @property
    def pending(self) -> bool: ...


_lock = threading.Lock()
_installed = False
_books: Tuple[_Book, ...] = ()


def watch_foreign_starts(book: _Book) -> None:
    """Warn about unclaimed foreign starts while ``book``'s reaper runs."""
    global _installed, _books
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
        _books = _books + (book,)


def unwatch_foreign_starts(book: _Book) -> None:
    global _books
    with _lock:
        _books = tuple(b for b in _books if b is not book)


def _caller_level() -> int:
    """``stacklevel`` for ``warnings.warn`` in ``_hook``: the first user frame."""
    frame = sys._getframe(2)   # _hook's caller: stacklevel 2 of a warn() in _hook
    level = 2
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not any(name == m or (m.endswith(".") and name.startswith(m)) for m in _MACHINERY):
            return level
        frame = frame.f_back   # type: ignore[assignment]
        level += 1
    return 2


def _hook(event: str, args: Tuple[Any, ...]) -> None:
    if event not in _STARTS:
        return
    books = _books
    if not books or any(book.pending for book in books):
        return
    if event == "os.posix_spawn" and sys._getframe(1).f_globals.get("__name__") == "subprocess":
        return   # Popen's own posix_spawn path: "subprocess.Popen" already warned
    warnings.warn(
        f"{event} while a pidsafe.Reaper(subreaper=True) runs and no claim is open: the "
        "reaper will reap this child like an orphan, so its own waiter gets nothing "
        "(Popen.wait() returns 0, os.waitpid raises ChildProcessError); open "
        "reaper.claim() before starting it, or use pidsafe.spawn",
        ForeignChildWarning, stacklevel=_caller_level())


def _after_fork_in_child() -> None:
    global _lock, _books
    _lock = threading.Lock()
    _books = ()   # the parent's reaper thread does not exist here


os.register_at_fork(after_in_child=_after_fork_in_child)
