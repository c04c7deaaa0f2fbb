"""pidsafe.shim's face: its names, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pidsafe
import pidsafe.shim as shim


def test_every_exported_name_resolves() -> None:
    for name in shim.__all__:
        assert getattr(shim, name) is not None, name
    assert set(shim.__all__) <= set(dir(shim))
    assert shim.RpcError is pidsafe.RpcError and shim.messages.TaskService.NAME


def test_importing_the_face_loads_nothing_else() -> None:
    code = ("import sys, pidsafe.shim; "
            "print(sorted(m for m in sys.modules if m.startswith('pidsafe.shim.') "
            "or m in ('socket', 'threading', 'logging')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
