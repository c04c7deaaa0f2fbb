"""pidsafe.container._stdio: the container process's stdin/stdout/stderr."""

from __future__ import annotations

import subprocess

from pidsafe.container import _stdio


def test_constants_are_subprocess_s() -> None:
    """Spelt as subprocess spells them, without importing it (create's start-up)."""
    assert (_stdio.PIPE, _stdio.STDOUT, _stdio.DEVNULL) == (
        subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL)
