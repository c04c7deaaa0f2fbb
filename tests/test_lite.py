"""pidsafe/_lite.py: json, signal and threads through their C halves, exactly as the
public modules.

Each check runs twice: in this interpreter (``_json``, ``_signal`` and
``_thread`` used), and in a subprocess where they are missing or lack what
_lite takes from them, so that the fallback to :mod:`json`, :mod:`signal`
and :mod:`threading` runs too.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, List, Tuple

import pytest

from pidsafe import _lite


def outcome(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Tuple[str, Any]:
    """What ``f`` returns, or its exception's type and words."""
    try:
        return ("ok", f(*args, **kwargs))
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, str(exc))


def documents() -> List[Any]:
    circular: List[Any] = []
    circular.append(circular)
    return [
        {"ociVersion": "1.0.2", "id": "c1", "pid": 42, "status": "created",
         "annotations": {"a": "b"}, "nested": {"x": [1, 2.5, None, True, False, {}]}},
        {}, [], [[[]]], "x", "é\"\\\n\u2028\U0001f600", 0, -1, 2 ** 70, 1.0, -0.0, 1e300,
        float("inf"), float("nan"), None, True, (1, "two"),
        {"z": 1, "a": {"m": [], "b": [{"k": "v"}]}},
        {1: "int key", None: "None key", 2.5: "float key", True: "bool key"},
        {"bad": object()}, {"bad": {1, 2}}, circular,
    ]


TEXTS = ["", " ", "{", "[1,]", "1 2", '{"a":1}x', "nan", "[NaN]", "[Infinity, -Infinity]",
         '"\\ud800"', "[1e5000]", '"a\tb"', " \n\t{\"a\": [1, 2, {}]} \r\n", "\ufeff[]",
         '{"a": 1, "a": 2}', "01", "-", '"\\x"', "[" * 50 + "]" * 50, "true false"]


def check_like_json() -> None:
    for doc in documents():
        for kwargs in ({}, {"sort_keys": True}):
            assert outcome(_lite.dumps, doc, **kwargs) == outcome(json.dumps, doc, **kwargs), doc
        assert outcome(_lite.dumps, doc, sort_keys=True, compact=True) == outcome(
            json.dumps, doc, sort_keys=True, separators=(",", ":")), doc
        assert outcome(_lite.dumps_indented, doc) == outcome(json.dumps, doc, indent=2), doc
        kind, text = outcome(json.dumps, doc)
        if kind == "ok":
            got, want = _lite.loads(text), json.loads(text)
            # repr: nan != nan, and -0.0 == 0.0
            assert repr(got) == repr(want), text
    for text in TEXTS:
        assert repr(outcome(_lite.loads, text)) == repr(outcome(json.loads, text)), text


def check_like_signal() -> None:
    assert _lite.valid_signals() == {int(s) for s in signal.valid_signals()}
    for name in ("SIGTERM", "SIGKILL", "SIGINT", "SIGSTOP"):
        assert getattr(_lite, name) == int(getattr(signal, name))
    assert (_lite.SIG_DFL, _lite.SIG_IGN) == (int(signal.SIG_DFL), int(signal.SIG_IGN))
    for s in signal.Signals:
        assert _lite.signal_number(s.name) == int(s), s
    for name in ("SIG_DFL", "SIG_IGN", "SIG_BLOCK", "SIGFOO", "TERM", "sigterm", "", "NSIG"):
        assert _lite.signal_number(name) is None, name
    assert _lite.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGINT)
    # _signal.signal takes its own SIG_IGN (an int), not signal.Handlers.SIG_IGN
    previous = _lite.setsignal(signal.SIGUSR2, _lite.SIG_IGN)
    try:
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)


def check_like_threading() -> None:
    lock, rlock = _lite.Lock(), _lite.RLock()
    assert type(lock) is type(threading.Lock()) and type(rlock) is type(threading.RLock())
    with lock:
        assert not lock.acquire(blocking=False)
    with rlock, rlock:
        pass
    assert _lite.get_ident() == threading.get_ident()
    assert _lite.main_thread_ident() == threading.main_thread().ident
    seen: List[int] = []
    t = threading.Thread(target=lambda: seen.append(_lite.main_thread_ident()))
    t.start()
    t.join()
    assert seen == [threading.main_thread().ident]


def check_like_functools() -> None:
    add = _lite.partial(int.__add__, 2)
    assert add(3) == 5 and add.func is int.__add__ and add.args == (2,)
    assert _lite.partial(dict, a=1)(b=2) == {"a": 1, "b": 2}


def test_partial_as_functools_does() -> None:
    check_like_functools()


def _checked_by_a_fresh_interpreter(code: str) -> None:
    """Run ``code`` in a new interpreter (nothing imported yet), which must
    print ``checked`` and nothing else."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "checked\n", r.stdout + r.stderr


def test_the_c_halves_are_used_here() -> None:
    assert _lite._scan_once is not None and _lite._make_encoder is not None
    assert _lite.getsignal is not signal.getsignal
    assert _lite.get_ident is not threading.get_ident or threading.get_ident is _lite.get_ident


def test_threads_as_threading_does() -> None:
    check_like_threading()


def test_errors_without_json_imported() -> None:
    """The C scanner makes its error from json.decoder only when that is
    imported: a bad document is json's own JSONDecodeError all the same."""
    code = ("import sys\n"
            "from pidsafe import _lite\n"
            "assert 'json.decoder' not in sys.modules, 'imported json'\n"
            "assert _lite.loads(' {\"a\": [1]} ') == {'a': [1]}\n"
            "assert 'json.decoder' not in sys.modules, 'imported json'\n"
            "try:\n"
            "    _lite.loads('{not json')\n"
            "except ValueError as e:\n"
            "    assert type(e).__name__ == 'JSONDecodeError', repr(e)\n"
            "    assert str(e).startswith('Expecting property name'), e\n"
            "print('checked')\n")
    _checked_by_a_fresh_interpreter(code)


def test_the_main_thread_without_threading_imported() -> None:
    """Before anything imports threading, the main thread is the caller (as
    threading would take it), and threading agrees once imported."""
    code = ("import sys\n"
            "from pidsafe import _lite\n"
            "assert 'threading' not in sys.modules, 'imported threading'\n"
            "ident = _lite.main_thread_ident()\n"
            "assert ident == _lite.get_ident()\n"
            "import threading\n"
            "assert threading.main_thread().ident == ident\n"
            "print('checked')\n")
    _checked_by_a_fresh_interpreter(code)


def test_json_as_json_does() -> None:
    check_like_json()


def test_signal_as_signal_does() -> None:
    check_like_signal()


def test_loads_of_a_large_document_round_trips() -> None:
    doc = {f"k{i}": [i, str(i) * 3, {"f": i / 7, "n": None}] for i in range(2000)}
    text = _lite.dumps(doc, sort_keys=True, compact=True)
    assert text == json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert _lite.loads(text) == doc
    assert not math.isnan(_lite.loads("1.5"))


@pytest.mark.parametrize("encoded", [(), ("config",), ("a", "config", "zz"), ("0", "~"),
                                     ("b", "id")])
def test_dumps_sorted_splices_values_given_as_json(encoded: Tuple[str, ...]) -> None:
    doc = {"config": {"z": [1, 2.5, None], "a": {"y": "\u00e9", "b": True}}, "b": "x",
           "a": [], "id": "c1", "pid": 7, "zz": {}, "0": 0, "~": "~"}
    plain = _lite.dumps(doc, sort_keys=True, compact=True)
    given = {k: _lite.dumps(doc[k], sort_keys=True, compact=True) for k in encoded}
    rest = {k: v for k, v in doc.items() if k not in given}
    assert _lite.dumps_sorted(rest, given) == plain
    assert _lite.dumps_sorted({}, {}) == "{}"
    with pytest.raises(TypeError):
        _lite.dumps_sorted({"m": object()}, given)


@pytest.mark.parametrize("hide", [
    # _json missing (json then has its pure-Python scanner and encoder)
    "sys.modules['_json'] = None",
    # _signal without what _lite takes (signal itself imported first, with the real one)
    "import signal, types; sys.modules['_signal'] = types.ModuleType('_signal')",
    # _thread without what _lite takes (threading imported first, with the real one)
    "import threading, types; sys.modules['_thread'] = types.ModuleType('_thread')",
    # _functools missing (functools then has its pure-Python partial)
    "import functools; sys.modules['_functools'] = None",
])
def test_the_fallbacks_behave_the_same(hide: str) -> None:
    # The test module (and pytest, which needs _thread) first; then _lite again
    # without the C half.
    code = ("import importlib, sys\n"
            "sys.path.insert(0, {tests!r})\n"
            "import signal\n"
            "import test_lite\n"
            f"{hide}\n"
            "from pidsafe import _lite\n"
            "importlib.reload(_lite)\n"
            "assert (_lite._make_encoder is None) == ('_json' in {hide!r})\n"
            "assert (_lite.getsignal is signal.getsignal) == ('_signal' in {hide!r})\n"
            "import threading\n"
            "assert (_lite.Lock is threading.Lock and _lite.RLock is threading.RLock) == ("
            "'_thread' in {hide!r})\n"
            "test_lite.check_like_json(); test_lite.check_like_signal()\n"
            "test_lite.check_like_threading(); test_lite.check_like_functools()\n"
            "print('checked')\n")
    import pathlib

    tests = str(pathlib.Path(__file__).resolve().parent)
    _checked_by_a_fresh_interpreter(code.replace("{tests!r}", repr(tests))
                                    .replace("{hide!r}", repr(hide)))


@pytest.mark.parametrize("name, package", [
    ("os.path", ""), ("pidsafe._value", ""), ("._value", "pidsafe"),
    ("..cgroup", "pidsafe.container.init"), ("..", "pidsafe.container.init"),
    (".cgroup._files", "pidsafe.container"),
])
def test_import_module_is_importlibs(name: str, package: str) -> None:
    import importlib

    assert _lite.import_module(name, package) is importlib.import_module(name, package or None)


def test_import_module_raises_importlibs_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        _lite.import_module("pidsafe._no_such_module")
    with pytest.raises(ModuleNotFoundError):
        _lite.import_module("._no_such_module", "pidsafe")


@pytest.mark.parametrize("imported", [False, True], ids=["warnings-not-imported", "imported"])
def test_ignoring_warnings_as_catch_warnings_does(imported: bool) -> None:
    """Inside, the category is ignored (warnings imported there or before)
    and others are shown; after, the filters are as they were."""
    code = ("import sys\n"
            + ("import warnings\n" if imported else "")
            + "from pidsafe import _lite\n"
            "import _warnings\n"
            "assert ('warnings' in sys.modules) == {imported!r}, 'warnings imported'\n"
            "before = list(_warnings.filters)\n"
            "with _lite.ignoring_warnings(UserWarning):\n"
            "    import warnings\n"
            "    warnings.warn('hidden')\n"
            "    warnings.warn('shown inside', RuntimeWarning)\n"
            "    assert warnings.filters[0][:3] == ('ignore', None, UserWarning)\n"
            "assert list(warnings.filters) == before, (warnings.filters, before)\n"
            "warnings.warn('shown after')\n"
            "print('checked')\n").replace("{imported!r}", repr(imported))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "checked\n", r.stdout + r.stderr
    assert "hidden" not in r.stderr
    assert "RuntimeWarning: shown inside" in r.stderr and "UserWarning: shown after" in r.stderr
