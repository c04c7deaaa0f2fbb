"""json, signal, warnings and importlib without their import cost: the C halves, with a fallback.

Every pidsafe-runc command is a new interpreter, and ``start``, ``state``,
``kill`` and ``delete`` do little more than read a state file and send a
signal.  The public modules cost more than that work: :mod:`json` imports
:mod:`re` and compiles its patterns (re imports :mod:`enum`), and
:mod:`signal` builds its ``Signals`` and ``Handlers`` enums at import.
Together that is about a third of such a command's CPU.  The C modules under
them (``_json``, ``_signal``) do the same work and import nothing.

This module is where pidsafe imports CPython's private modules (the
shim's ``start`` action, another new interpreter, takes ``_socket`` and
``_sha256`` itself, for the same reason).  Where one is missing or lacks a function (another interpreter, a
future CPython), the public module is used instead; tests/test_lite.py runs
both ways and compares them.  Results are the public modules' exactly:
values from :func:`loads`, text from :func:`dumps`, signal numbers (plain
ints here, ``IntEnum`` members there: equal either way), and every error
is the public module's own (a document that does not parse is parsed again
by :func:`json.loads`, which raises).
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set


# --- json ---------------------------------------------------------------------

class _DecodeContext:
    """What ``_json.make_scanner`` reads off a ``json.JSONDecoder``: its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__
    memo: Dict[str, str] = {}


def _not_serializable(o: Any) -> Any:
    # json.JSONEncoder.default's words
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


_WHITESPACE = " \t\n\r"   # json's: what may surround a document

_scan_once: Optional[Callable[[str, int], Any]] = None
_make_encoder: Optional[Callable[..., Any]] = None
_encode_str: Optional[Callable[[str], str]] = None
try:
    import _json  # json's C half (typeshed has its stubs)
except ImportError:   # pragma: no cover - every CPython build has it
    pass
else:
    _scan_once = getattr(_json, "make_scanner", None)
    if _scan_once is not None:
        _scan_once = _scan_once(_DecodeContext())
    _make_encoder = getattr(_json, "make_encoder", None)
    _encode_str = getattr(_json, "encode_basestring_ascii", None)
    if _encode_str is None:   # pragma: no cover
        _make_encoder = None
    del _json


def loads(text: "str | bytes") -> Any:
    """:func:`json.loads`.

    Raises:
        json.JSONDecodeError: as json.loads does (a ``ValueError``).
        UnicodeDecodeError: bytes that are not UTF-8 (as json.loads).
    """
    if isinstance(text, bytes):
        if text[:3] == b"\xef\xbb\xbf" or b"\x00" in text[:4]:
            # A BOM, or UTF-16/32: json.detect_encoding's other answers.
            import json

            return json.loads(text)
        text = text.decode("utf-8", "surrogatepass")   # as json.loads decodes UTF-8
    scan = _scan_once
    if scan is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scan(text, start)
        except (StopIteration, ValueError, SystemError):
            # json.loads below raises its own error.  (The scanner makes its
            # JSONDecodeError from json.decoder only if that is imported
            # already; if not, it returns NULL with no exception set, which
            # CPython turns into a SystemError.)
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return value
    import json

    return json.loads(text)


def dumps(obj: Any, *, sort_keys: bool = False, compact: bool = False) -> str:
    """:func:`json.dumps` of ``obj`` (``ensure_ascii``, no indent);
    ``compact``: ``separators=(",", ":")``.

    Raises:
        TypeError: something that is not JSON (as json.dumps).
        ValueError: a circular reference (as json.dumps).
    """
    items, keys = (",", ":") if compact else (", ", ": ")
    if _make_encoder is not None:
        encode = _make_encoder({}, _not_serializable, _encode_str, None, keys, items,
                               sort_keys, False, True)
        return "".join(encode(obj, 0))
    import json  # pragma: no cover - exercised by tests/test_lite.py in a subprocess

    return json.dumps(obj, sort_keys=sort_keys, separators=(items, keys))


def dumps_sorted(obj: Dict[str, Any], encoded: Dict[str, str]) -> str:
    """``dumps({**obj, **encoded}, sort_keys=True, compact=True)``, byte for
    byte, where ``encoded``'s values are that JSON already: a caller that
    writes the same large value again and again encodes it once.  Every key
    is a ``str``, and none is in both.

    Raises:
        TypeError, ValueError: as :func:`dumps`.
    """
    marks = sorted(encoded)
    parts: List[str] = []
    lo: Optional[str] = None
    for hi in (*marks, None):
        part = {k: v for k, v in obj.items()
                if (lo is None or k > lo) and (hi is None or k < hi)}
        if part:
            parts.append(dumps(part, sort_keys=True, compact=True)[1:-1])
        if hi is not None:
            parts.append(dumps(hi) + ":" + encoded[hi])
        lo = hi
    return "{" + ",".join(parts) + "}"


def dumps_indented(obj: Any) -> str:
    """:func:`json.dumps` of ``obj`` with ``indent=2``, byte for byte.

    Raises:
        TypeError, ValueError: as :func:`dumps` (checked first: the layout
            below follows containers without looking for cycles).
    """
    dumps(obj)
    return _indented(obj, "\n")


def _indented(obj: Any, newline: str) -> str:
    inner = newline + "  "
    if isinstance(obj, dict) and obj:
        if not all(isinstance(k, str) for k in obj):
            import json   # json's rules for other keys (1 -> "1", None -> "null")

            return json.dumps(obj, indent=2).replace("\n", newline)
        return ("{" + inner + ("," + inner).join(dumps(k) + ": " + _indented(v, inner)
                                                 for k, v in obj.items()) + newline + "}")
    if isinstance(obj, (list, tuple)) and obj:
        return "[" + inner + ("," + inner).join(_indented(v, inner) for v in obj) + newline + "]"
    return dumps(obj)


# --- signal ---------------------------------------------------------------------

# getsignal/setsignal: signal.getsignal/signal.signal without the enum
# conversions; a handler is a callable, or SIG_DFL or SIG_IGN of this module
# (plain ints: _signal.signal refuses signal.Handlers' members).
try:
    import _signal  # type: ignore[import-not-found]  # no stubs: signal's C half
    getsignal: Callable[[int], Any] = _signal.getsignal
    setsignal: Callable[[int, Any], Any] = _signal.signal
    _valid: Callable[[], Set[int]] = _signal.valid_signals
    _numbers: Any = _signal
except (ImportError, AttributeError):   # pragma: no cover - exercised by tests/test_lite.py
    import signal as _numbers

    getsignal = _numbers.getsignal
    setsignal = _numbers.signal
    _valid = _numbers.valid_signals

SIG_DFL: int = int(_numbers.SIG_DFL)
SIG_IGN: int = int(_numbers.SIG_IGN)
SIGINT: int = int(_numbers.SIGINT)
SIGKILL: int = int(_numbers.SIGKILL)
SIGSTOP: int = int(_numbers.SIGSTOP)
SIGTERM: int = int(_numbers.SIGTERM)


def valid_signals() -> Set[int]:
    """:func:`signal.valid_signals`, as ints."""
    return {int(s) for s in _valid()}


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """:func:`signal.pidfd_send_signal` (Linux 5.1), looked up on signal's C
    half at each call (tests/faults.py counts and fails it there)."""
    _numbers.pidfd_send_signal(pidfd, sig)


def signal_number(name: str) -> Optional[int]:
    """The number of the signal named ``name`` (``"SIGTERM"``; as ``signal.Signals[name]``),
    or ``None`` when there is none by that name."""
    if not name.startswith("SIG") or name.startswith("SIG_"):
        return None
    value = getattr(_numbers, name, None)
    return None if value is None or isinstance(value, bool) else int(value)


# --- threads --------------------------------------------------------------------

# threading's locks are _thread's own (threading.Lock is _thread.allocate_lock,
# threading.RLock() makes a _thread.RLock); threading itself imports functools
# and collections with it, a tenth of a short command's start-up.
try:
    import _thread  # threading's C half
    Lock: Callable[[], Any] = _thread.allocate_lock
    RLock: Callable[[], Any] = _thread.RLock
    get_ident: Callable[[], int] = _thread.get_ident
except (ImportError, AttributeError):   # pragma: no cover - exercised by tests/test_lite.py
    import threading as _threading

    Lock = _threading.Lock
    RLock = _threading.RLock
    get_ident = _threading.get_ident


# --- functools --------------------------------------------------------------------

# functools.partial is _functools's (the C type); functools itself imports
# collections (keyword, operator, reprlib, heapq) with it, ~1 ms of create.
try:   # no stubs for functools's C half
    from _functools import partial as partial  # type: ignore[import-not-found]
except ImportError:   # pragma: no cover - exercised by tests/test_lite.py
    from functools import partial as partial


def main_thread_ident() -> int:
    """``threading.main_thread().ident``, without importing threading.

    threading takes as its main thread the one that first imports it; if it
    has not been imported, that would be the calling thread, which this
    returns.
    """
    import sys

    threading = sys.modules.get("threading")
    if threading is not None:
        ident: Optional[int] = threading.main_thread().ident
        if ident is not None:
            return ident
    return get_ident()


# --- warnings -------------------------------------------------------------------

class ignoring_warnings:
    """``with warnings.catch_warnings(): warnings.simplefilter("ignore", category)``,
    without importing :mod:`warnings` when nothing has yet.

    warnings' C half (``_warnings``) keeps the filter list, and :mod:`warnings`
    takes that same list when it is imported (``from _warnings import
    filters``): the filter goes into it, and the list's contents are put
    back on exit, so a warning issued inside, with warnings imported there
    or not, is filtered as ``catch_warnings`` would.  Where warnings is
    imported already (``-W`` options import it at start-up), or the C half
    lacks the list, it is ``warnings.catch_warnings`` itself.  Not
    thread-safe, as catch_warnings is not.
    """

    def __init__(self, category: type) -> None:
        self._category = category
        self._undo: Optional[Callable[[], None]] = None

    def __enter__(self) -> None:
        import sys

        if "warnings" not in sys.modules:
            try:
                import _warnings   # warnings' C half
                filters = _warnings.filters
                mutated = _warnings._filters_mutated  # type: ignore[attr-defined]
            except (ImportError, AttributeError):   # pragma: no cover - another interpreter
                filters = None
            if type(filters) is list:
                saved = filters[:]

                def undo() -> None:
                    filters[:] = saved
                    mutated()

                # warnings.simplefilter's entry: (action, message, category, module, lineno)
                filters.insert(0, ("ignore", None, self._category, None, 0))
                self._undo = undo
                mutated()   # what warnings cached per module no longer holds
                return
        import warnings

        cm = warnings.catch_warnings()
        cm.__enter__()
        self._undo = lambda: cm.__exit__(None, None, None)
        warnings.simplefilter("ignore", self._category)

    def __exit__(self, *exc: object) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


# --- imports --------------------------------------------------------------------

def import_module(name: str, package: str = "") -> Any:
    """:func:`importlib.import_module`, without importing importlib.

    The ``importlib`` package imports ``warnings`` (together about 1 ms of
    every pidsafe-runc command); the import statement's machinery
    (``__import__``) is built in.  ``name`` is absolute, or relative
    (leading dots) to ``package``.
    """
    import sys

    level = len(name) - len(name.lstrip("."))
    if level:
        base = package.rsplit(".", level - 1)[0]
        name = f"{base}.{name[level:]}" if name[level:] else base
    __import__(name)
    return sys.modules[name]
