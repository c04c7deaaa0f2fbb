"""The suite's own timeout: a test hung inside a critical section fails.

pidsafe's critical sections defer Python signal handlers (``_sigsafe``), so
pytest-timeout's SIGALRM method cannot end a hang inside one: a broken exec
deadline would hang CI instead of failing a test.  pyproject.toml uses the
thread method, which ends the hung test's process and reports it failed.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

HUNG = '''
import os

from pidsafe._sigsafe import critical


def test_hung_inside_a_critical_section() -> None:
    r, w = os.pipe()
    with critical:   # a SIGALRM here is deferred, and the read restarts
        os.read(r, 1)
'''


def test_a_test_hung_inside_a_critical_section_fails_at_the_timeout(
        tmp_path: pathlib.Path) -> None:
    (tmp_path / "test_hung.py").write_text(HUNG)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-o", "timeout=2", str(tmp_path / "test_hung.py")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Timeout" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "test_hung_inside_a_critical_section" in r.stdout + r.stderr
