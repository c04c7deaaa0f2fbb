"""Fault injection: fail, or interrupt, the k-th call into the native layer.

``Faults`` stands between pidsafe and the kernel for the length of one
operation:

* every call into ``pidsafe._native`` (through ``_sys.lib``: clone3, pidfd
  calls, the mount API, ...) and every call of the ``os``/``fcntl``
  functions that create or move resources (``os.open``, ``os.pipe2``,
  ``os.read``, ``fcntl.fcntl`` ... see ``OS_CALLS``) is counted;
* ``fail_at(k, errno)`` makes the k-th such call fail with that errno, as
  the kernel would (a native call returns its failure value with ``errno``
  set; an ``os`` call raises the errno's ``OSError``), without running it;
* ``interrupt_at(k)`` lets the k-th call run and then delivers SIGINT to
  this thread at once, whose handler raises ``KeyboardInterrupt``: exactly a
  Ctrl-C landing right after a resource was created (or, with
  ``before=True``, right before the call).
* ``interrupt_at(k, repeat=True)`` delivers it after the k-th call and
  after every later one: Ctrl-C pressed again and again, also while the
  operation undoes what it made.
* ``interrupt_twice(k, j)``: SIGINT after the k-th call, as
  ``interrupt_at(k)``, and again at the j-th *live point* after that: a
  point where CPython runs a signal handler (a Python function's entry, the
  return of a call into C, ``sys.setprofile``'s ``call`` and ``c_return``)
  in pidsafe's code, at which SIGINT's handler would run now rather than
  be recorded by a critical section (it is not diverted, or the section is
  at a safe point, ``_sigsafe.interruptibly``).  A second Ctrl-C at every
  bytecode where it could land while the failure is handled and undone;
  ``points`` counts the live points that followed the first (with ``j=0``,
  none is interrupted).
* ``interrupt_at_end(k)`` records that SIGINT as arrived inside the k-th
  outermost ``critical`` section (pidsafe/_sigsafe.py) of the main thread,
  just before it ends, where the deferred handler runs: a Ctrl-C in a
  section that makes no counted call.  ``count()`` counts those ends too
  (``section_ends``, each named by the code that opened the section).

Typical use, for every k (see ``sweep``)::

    n = faults.count(lambda: pidsafe.spawn(["true"]).wait())
    for k in range(1, n + 1):
        with leak_check(f"k={k}"):
            with faults.fail_at(k, errno.EMFILE), pytest.raises(OSError):
                op()

``leak_check`` (in conftest) fails with the list of fds, children and mounts
the block left behind.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stubs: signal's C half
import contextlib
import errno as errno_mod
import fcntl
import importlib
import os
import pkgutil
import signal
import socket
import sys
import threading
from types import ModuleType
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Tuple

import pidsafe
from pidsafe import _sigdivert, _sigsafe, _sys

#: os/fcntl functions counted (and failable) besides the native layer.
OS_CALLS: Tuple[Tuple[ModuleType, str], ...] = (
    (os, "open"), (os, "pipe2"), (os, "pipe"), (os, "dup"), (os, "read"), (os, "write"),
    (os, "mkdir"), (os, "rename"), (os, "replace"), (os, "fsync"), (os, "unlink"),
    (os, "rmdir"), (os, "listdir"), (os, "scandir"), (os, "readlink"), (os, "openpty"),
    (fcntl, "fcntl"), (fcntl, "flock"), (fcntl, "ioctl"),
    (socket, "recv_fds"),
    # The stdlib's pidfd calls, through which a saved container's init is
    # held again (ProcessIdentity.open: no compiled module for that).
    (os, "pidfd_open"), (_signal, "pidfd_send_signal"),
)

#: The files of the critical sections (their frames are the sections', not
#: their callers').
_SIGSAFE_FILES = frozenset({_sigsafe.__file__, _sigdivert.__file__})

#: What a native function returns on failure, where it is not -1.
_FAIL_VALUE: Dict[str, Any] = {
    "pidsafe_idmapped_bind": 1,   # BIND_STAGE_OPEN_TREE: "failed at the first step"
    "pidsafe_seccomp_new": _sys.ffi.NULL,
}
#: Native functions that are not system calls: neither counted nor failed.
_NOT_SYSCALLS = frozenset({
    "pidsafe_version", "pidsafe_has_clone3_trampoline", "pidsafe_psi_magic",
    # pidsafe._libseccomp: lookups and release, which cannot fail.
    "pidsafe_seccomp_version", "pidsafe_seccomp_available", "pidsafe_seccomp_lib_version",
    "pidsafe_seccomp_arch_resolve", "pidsafe_seccomp_syscall_resolve",
    "pidsafe_seccomp_syscall_resolve_arch", "pidsafe_seccomp_arch_native",
    "pidsafe_seccomp_free"})


def _callers() -> Tuple[str, ...]:
    """The pidsafe functions making the current call, innermost first (not
    pidsafe._sys's)."""
    top = os.path.dirname(pidsafe.__file__) + os.sep
    sys_dir = os.path.dirname(_sys.__file__) + os.sep
    names = []
    f: Optional[Any] = sys._getframe(1)
    while f is not None:
        name = f.f_code.co_filename
        if name.startswith(top) and not name.startswith(sys_dir):
            names.append(f.f_code.co_name)
        f = f.f_back
    return tuple(names)


def _set_sigint(handler: Any) -> Any:
    """Install ``handler`` for SIGINT and return the one it replaces; inside
    a critical section (armed in the middle of an operation), behind the
    section's diversion, as if it had been installed before the section."""
    if (threading.current_thread() is threading.main_thread()
            and _sigdivert._getsignal(signal.SIGINT) is _sigdivert._record
            and signal.SIGINT in _sigdivert.state.saved):
        old = _sigdivert.state.saved[signal.SIGINT]
        _sigdivert.state.saved[signal.SIGINT] = handler
        return old
    return signal.signal(signal.SIGINT, handler)


class _Interrupt(KeyboardInterrupt):
    """The KeyboardInterrupt that ``interrupt_at`` delivers."""


class Faults:
    """See the module docstring.  One per test (the ``faults`` fixture)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: List[str] = []
        self._fail: Optional[Tuple[int, int]] = None        # (k, errno)
        self._interrupt: Optional[Tuple[int, bool]] = None  # (k, before)
        self._repeat = False                                 # and every call after k
        self._interrupt_end: Optional[int] = None           # k: the k-th section end
        self._armed = False
        self.fired: Optional[str] = None   # the call that was failed or interrupted
        #: The pidsafe functions that made that call, innermost first.
        self.fired_in: Optional[Tuple[str, ...]] = None
        #: Where each outermost critical section of the main thread ended.
        self.section_ends: List[str] = []
        self._second: Optional[int] = None   # j: interrupt_twice's second point
        #: Live points seen after the first interrupt (interrupt_twice).
        self.points = 0
        #: Where the second interrupt landed (interrupt_twice).
        self.fired_again: Optional[str] = None

    # -- the interposition ----------------------------------------------------

    def _tick(self, name: str) -> Tuple[bool, bool, bool]:
        """Count one call: (fail it, interrupt before it, interrupt after it)."""
        with self._lock:
            if not self._armed:
                return False, False, False
            self.calls.append(name)
            k = len(self.calls)
            fail = self._fail is not None and self._fail[0] == k
            before = self._interrupt is not None and self._interrupt == (k, True)
            after = self._interrupt is not None and self._interrupt == (k, False)
            if self._repeat and self._interrupt is not None and k > self._interrupt[0]:
                after = True
            if (fail or before or after) and self.fired is None:
                self.fired = f"call {k}: {name}"
                self.fired_in = _callers()
            return fail, before, after

    def _tick_end(self, where: str) -> bool:
        """Count one section end: whether to interrupt it."""
        with self._lock:
            if not self._armed:
                return False
            self.section_ends.append(where)
            k = len(self.section_ends)
            if self._interrupt_end == k:
                self.fired = f"end of section {k}: {where}"
                return True
            return False

    def _wrap_end(self, real: Callable[[Any], None]) -> Callable[[Any], None]:
        def end(undo: Any) -> None:
            f = sys._getframe(1)     # __exit__, then the code whose section ends
            while f.f_back is not None and f.f_code.co_filename in _SIGSAFE_FILES:
                f = f.f_back
            where = (f"{f.f_code.co_filename.rsplit('/pidsafe/', 1)[-1]}:"
                     f"{f.f_code.co_name}:{f.f_lineno}")
            if self._tick_end(where) and signal.SIGINT in _sigdivert.state.saved:
                # As if SIGINT had come inside the section: recorded, not run.
                _sigdivert._record(signal.SIGINT, f)
            real(undo)
        return end

    def _live_points(self) -> Callable[[Any, str, Any], None]:
        top = os.path.dirname(pidsafe.__file__) + os.sep
        state = _sigdivert.state

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event != "call" and event != "c_return":
                return
            if not frame.f_code.co_filename.startswith(top):
                return
            if (_sigdivert._getsignal(signal.SIGINT) is _sigdivert._record
                    and not (getattr(state, "safe", 0) and state.safe == state.depth)):
                return   # only recorded here
            self.points += 1
            if self.points == self._second:
                sys.setprofile(None)
                self.fired_again = (f"point {self.points}: {event} in "
                                    f"{frame.f_code.co_filename.rsplit('/pidsafe/', 1)[-1]}:"
                                    f"{frame.f_code.co_name}:{frame.f_lineno}")
                signal.raise_signal(signal.SIGINT)   # the handler runs (and raises) here
        return profile

    def _deliver_sigint(self) -> None:
        if threading.current_thread() is threading.main_thread():
            if self._second is not None and self.fired_again is None and self.points == 0:
                sys.setprofile(self._live_points())
            signal.raise_signal(signal.SIGINT)   # the handler runs right here
        # Other threads (a reaper's) take no Python signal handler: nothing to do.

    def _wrap_native(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            fail, before, after = self._tick(name)
            if before:
                self._deliver_sigint()
            if fail:
                assert self._fail is not None
                _sys.ffi.errno = self._fail[1]
                return _FAIL_VALUE.get(name, -1)
            ret = fn(*args)
            if after:
                saved = _sys.ffi.errno
                self._deliver_sigint()
                _sys.ffi.errno = saved
            return ret
        return call

    def _wrap_os(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            fail, before, after = self._tick(name)
            if before:
                self._deliver_sigint()
            if fail:
                assert self._fail is not None
                err = self._fail[1]
                raise OSError(err, f"{os.strerror(err)} (injected into {name})")
            try:
                return fn(*args, **kwargs)
            finally:   # after a call that raised too: a Ctrl-C right after it
                if after:
                    self._deliver_sigint()
        return call

    @contextlib.contextmanager
    def _installed(self) -> Iterator[None]:
        faults = self

        class LibProxy:
            def __init__(self, real_lib: Any) -> None:
                self._real_lib = real_lib

            def __getattr__(self, attr: str) -> Any:
                value = getattr(self._real_lib, attr)
                if attr.startswith("pidsafe_") and callable(value) and attr not in _NOT_SYSCALLS:
                    return faults._wrap_native(attr, value)
                return value

        # pidsafe._native's lib, and pidsafe._libseccomp's once it is loaded.
        real_libs = [_sys.lib]
        seccomp = sys.modules.get("pidsafe._sys._seccomp")
        if seccomp is not None:
            real_libs.append(seccomp.lib)
        proxies = {id(lib): LibProxy(lib) for lib in real_libs}
        patched: List[Tuple[Any, str, Any]] = []
        # Every _sys module holds `lib`; some load on first use (PEP 562 in
        # _sys/__init__): load them all now, or one first used inside the
        # operation would call the real lib, uncounted.
        for info in pkgutil.iter_modules(_sys.__path__, "pidsafe._sys."):
            importlib.import_module(info.name)
        for mod in [m for n, m in list(sys.modules.items())
                    if n.startswith("pidsafe._sys") and m is not None]:
            lib = getattr(mod, "lib", None)
            if id(lib) in proxies and any(lib is r for r in real_libs):
                patched.append((mod, "lib", lib))
                setattr(mod, "lib", proxies[id(lib)])
        patched.append((_sigsafe, "_end", _sigsafe._end))
        _sigsafe._end = self._wrap_end(_sigsafe._end)  # type: ignore[assignment]
        for mod, attr in OS_CALLS:
            real = getattr(mod, attr, None)
            if real is not None:
                patched.append((mod, attr, real))
                setattr(mod, attr, self._wrap_os(f"{mod.__name__}.{attr}", real))
        def on_sigint(signum: int, frame: Any) -> None:
            raise _Interrupt(f"injected SIGINT at {faults.fired}")

        old_sigint = _set_sigint(on_sigint)
        try:
            yield
        finally:
            sys.setprofile(None)
            with self._lock:
                self._armed = False
            for mod, attr, real in reversed(patched):
                setattr(mod, attr, real)
            _set_sigint(old_sigint)

    @contextlib.contextmanager
    def _armed_with(self, fail: Optional[Tuple[int, int]],
                    interrupt: Optional[Tuple[int, bool]],
                    interrupt_end: Optional[int] = None,
                    repeat: bool = False, second: Optional[int] = None) -> Iterator["Faults"]:
        self.calls = []
        self.section_ends = []
        self.fired = self.fired_in = None
        self._second, self.points, self.fired_again = second, 0, None
        self._fail, self._interrupt, self._interrupt_end = fail, interrupt, interrupt_end
        self._repeat = repeat
        with self._installed():
            with self._lock:
                self._armed = True
            yield self

    # -- the public face --------------------------------------------------------

    def paused(self) -> ContextManager[None]:
        """Within the block, calls are neither counted nor failed (any thread).

        For a sweep that targets one part of an operation: the calls of the
        other parts then do not shift ``k`` or take the injected failure.
        """
        return self._arming(False)

    def resumed(self) -> ContextManager[None]:
        """Within the block, calls are counted and failed again (undoes an
        enclosing :meth:`paused` for a part of it)."""
        return self._arming(True)

    @contextlib.contextmanager
    def _arming(self, armed: bool) -> Iterator[None]:
        with self._lock:
            armed, self._armed = self._armed, armed
        try:
            yield
        finally:
            with self._lock:
                self._armed = armed

    def count(self, op: Callable[[], Any]) -> int:
        """Run ``op`` (which must succeed) and return how many calls it made."""
        with self._armed_with(None, None):
            op()
        return len(self.calls)

    def fail_at(self, k: int, err: int = errno_mod.EIO) -> "contextlib.AbstractContextManager[Faults]":
        """Within the block, the k-th counted call fails with ``err``."""
        return self._armed_with((k, err), None)

    def interrupt_at(self, k: int, *, before: bool = False, repeat: bool = False
                     ) -> "contextlib.AbstractContextManager[Faults]":
        """Within the block, SIGINT lands right after (or before) the k-th
        call, and with ``repeat`` after every later call too."""
        return self._armed_with(None, (k, before), repeat=repeat)

    def interrupt_twice(self, k: int, j: int) -> "contextlib.AbstractContextManager[Faults]":
        """Within the block, SIGINT lands right after the k-th call and
        again at the j-th live point after it (``j=0``: only counted)."""
        return self._armed_with(None, (k, False), second=j)

    def interrupt_at_end(self, k: int) -> "contextlib.AbstractContextManager[Faults]":
        """Within the block, SIGINT arrives at the end of the k-th outermost
        critical section, inside it (its handler runs as the section ends)."""
        return self._armed_with(None, None, k)


#: Byte offsets of a function's first instructions (RESUME, where Python
#: runs signal handlers on entry, and what precedes it).
_FIRST_INSTRUCTIONS = 2


class RandomInterrupt(KeyboardInterrupt):
    """What :func:`interrupt_randomly` raises from its SIGPROF handler."""


def interrupt_randomly(op: Callable[[], Any], rounds: int, *,
                       interval: float = 0.0001, only_in_pidsafe: bool = False) -> int:
    """Run ``op`` ``rounds`` times while a SIGPROF handler raises
    :class:`RandomInterrupt` at whatever bytecode it lands on (at most once
    per round); returns how many rounds were interrupted.

    A profiling timer (process CPU time, so it also fires while the kernel
    works for us) rather than ITIMER_REAL, which pytest-timeout uses.
    ``ResourceWarning`` is ignored meanwhile: an interrupt between ``op``'s
    own call returning a handle and ``op`` storing it (at the handle's
    ``__enter__``) drops the handle, whose ``__del__`` closes it and warns;
    the caller's leak check then shows whether anything was really left.
    The cyclic GC runs only between rounds, unarmed, so that such a
    ``__del__`` is never itself interrupted.  An interrupt that lands in a
    ``__del__`` (of an object freed mid-round) is swallowed by Python
    ("Exception ignored in"); that is not the library's doing, so it is not
    reported as an unraisable exception here.

    With ``only_in_pidsafe``, the handler raises only while pidsafe code is
    on the interrupted frame's stack: an interrupt between ``op``'s call
    returning a running child and ``op`` storing it is the caller's window
    (no library can close it), not pidsafe's.
    """
    import gc
    import warnings

    from pidsafe._sigsafe import critical

    armed = [False]

    top = os.path.dirname(pidsafe.__file__) + os.sep

    def in_pidsafe(frame: Any) -> bool:
        if (frame is not None and frame.f_code.co_name in ("__enter__", "__exit__")
                and frame.f_lasti <= _FIRST_INSTRUCTIONS
                and frame.f_back is not None
                and not frame.f_back.f_code.co_filename.startswith(top)):
            # A handle's __enter__ or __exit__ as it begins, called by the
            # caller's ``with``: the caller's window (as right after a call
            # returned), which no library can close.
            return False
        f, last = frame, None
        while f is not None and f.f_code.co_filename in _SIGSAFE_FILES:
            f, last = f.f_back, f
        if (last is not None and last.f_code.co_name == "__enter__" and f is not None
                and not f.f_code.co_filename.startswith(top)):
            # The caller's own ``with critical:`` while it opens: the
            # section is not open yet, so this is still the caller's window.
            return False
        while frame is not None:
            if frame.f_code.co_filename.startswith(top):
                return True
            frame = frame.f_back
        return False

    def on_sigprof(signum: int, frame: Any) -> None:
        if armed[0] and (not only_in_pidsafe or in_pidsafe(frame)):
            armed[0] = False
            raise RandomInterrupt("random SIGPROF")

    hits = 0
    old = signal.signal(signal.SIGPROF, on_sigprof)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    old_hook = sys.unraisablehook

    def unraisable(u: Any) -> None:
        if not isinstance(u.exc_value, RandomInterrupt):
            old_hook(u)

    sys.unraisablehook = unraisable
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            signal.setitimer(signal.ITIMER_PROF, interval, interval)
            for i in range(rounds):
                try:
                    armed[0] = True
                    op()
                    armed[0] = False
                except RandomInterrupt:
                    hits += 1
                if i % 32 == 31:
                    gc.collect()
            gc.collect()
    finally:
        armed[0] = False
        with critical:   # a last SIGPROF is diverted, then finds SIG_DFL gone
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, old)
        if gc_was_enabled:
            gc.enable()
        sys.unraisablehook = old_hook
    return hits


Interrupt = _Interrupt
__all__ = ["Faults", "Interrupt", "OS_CALLS", "RandomInterrupt", "interrupt_randomly",
           "pidsafe"]
