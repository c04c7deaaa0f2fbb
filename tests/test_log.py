"""pidsafe/_log.py: the debug log on logging.getLogger("pidsafe"), free when nobody listens."""

from __future__ import annotations

import logging
import sys
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
