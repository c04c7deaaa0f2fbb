"""pidsafe/_log.py: the debug log on logging.getLogger("pidsafe"), free when nobody listens."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, List

import pytest

import pidsafe
from pidsafe import _log


def messages(caplog: pytest.LogCaptureFixture, logger: str = "pidsafe") -> List[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger or r.name.startswith(logger + ".")]


def test_a_record_names_its_area_and_the_pidsafe_function(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pidsafe")
    _log.debug("process", "made %d things", 3)
    (record,) = [r for r in caplog.records if r.name.startswith("pidsafe")]
    assert (record.name, record.levelno, record.getMessage()) == (
        "pidsafe.process", logging.DEBUG, "made 3 things")
    assert record.funcName == "test_a_record_names_its_area_and_the_pidsafe_function"


def test_nothing_below_debug_level_is_made(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pidsafe")

    class Loud:
        def __str__(self) -> str:   # pragma: no cover - must not run
            raise AssertionError("formatted although disabled")

    _log.debug("process", "%s", Loud())
    assert messages(caplog) == []


def test_logging_is_never_imported_for_it() -> None:
    script = ("import sys, pidsafe, pidsafe._log\n"
              "pidsafe._log.debug('process', 'x %s', 1)\n"
              "with pidsafe.spawn(['true']) as p: p.wait()\n"
              "pidsafe.run(['sleep', '5'], timeout=0.01) if False else None\n"
              "print('logging' in sys.modules)\n")
    r = pidsafe.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert r.stdout == "False\n"


def test_reaper_start_and_stop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pidsafe")
    with pidsafe.Reaper():
        pass
    assert messages(caplog, "pidsafe.reaper") == ["reaper started", "reaper stopped"]


@pytest.mark.root
def test_mounts_made_and_a_rollback(caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="pidsafe")
    root = tmp_path / "root"
    root.mkdir()
    good = pidsafe.Mount("tmpfs", "tmpfs", "/a", ["size=1m"])
    mounted = pidsafe.mount_all([good], root)
    pidsafe.unmount_all(mounted)
    assert messages(caplog, "pidsafe.mount") == [
        f"mounted under {root}: tmpfs on /a", f"unmounting under {root}, by identity: /a"]
    caplog.clear()
    bad = pidsafe.Mount("tmpfs", "tmpfs", "/b", ["nosuchoption=1"])
    with pytest.raises(pidsafe.MountError):
        pidsafe.mount_all([good, bad], root)
    (msg,) = messages(caplog, "pidsafe.mount")
    assert msg.startswith(f"mount_all under {root} failed (") and msg.endswith("['/a']")


class Alarm(Exception):
    pass


def test_a_handler_raising_during_a_log_call_raises_after_logging_let_go(
        caplog: pytest.LogCaptureFixture) -> None:
    """A signal handler that raises while logging holds its locks (here: while a
    handler emits) raises in the caller once the call is over; logging's module
    lock and the handler's lock are free, so no later log call of any thread blocks."""
    caplog.set_level(logging.DEBUG, logger="pidsafe")
    seen: List[bool] = []

    class Signalling(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            signal.raise_signal(signal.SIGUSR1)   # its handler would run right here
            seen.append(True)                     # ... but it runs after the call

    def handler(signum: int, frame: Any) -> None:
        raise Alarm()

    handler_obj = Signalling()
    logger = logging.getLogger("pidsafe.process")
    logger.addHandler(handler_obj)
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        for call in (lambda: _log.debug("process", "x"), lambda: _log.warning("process", "y"),
                     lambda: _log.error("process", "z", exc=ValueError("v"))):
            with pytest.raises(Alarm):
                call()
    finally:
        signal.signal(signal.SIGUSR1, old)
        logger.removeHandler(handler_obj)
    assert seen == [True, True, True]
    free = []
    for lock in (logging._lock, handler_obj.lock):   # type: ignore[attr-defined]
        t = threading.Thread(target=lambda lk=lock: free.append(lk.acquire(timeout=5)
                                                                and lk.release() is None))
        t.start()
        t.join()
    assert free == [True, True]
    assert messages(caplog)[-3:] == ["x", "y", "z"]


def test_warning_and_error_reach_logging_even_when_nobody_imported_it() -> None:
    script = ("import pidsafe._log as l\n"
              "l.warning('container', 'hook %s failed', 'h1')\n"
              "l.error('shim', 'bad %d', 3)\n")
    r = pidsafe.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert r.stderr == "hook h1 failed\nbad 3\n"
