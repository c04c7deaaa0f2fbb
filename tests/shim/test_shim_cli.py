"""containerd-shim-pidsafe-v1's command line: Go's flag rules, the actions, the errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pidsafe
from pidsafe.shim._cli import main, parse_flags

SHIM = Path(sys.executable).parent / "containerd-shim-pidsafe-v1"


def test_go_flag_forms() -> None:
    f = parse_flags(["-namespace", "ns", "--id=c1", "-address=/a.sock", "-debug",
                     "-publish-binary", "/usr/bin/containerd", "start", "-x"])
    assert (f.namespace, f.id, f.address, f.debug, f.publish_binary) == \
        ("ns", "c1", "/a.sock", True, "/usr/bin/containerd")
    assert f.action == "start" and f.args == ["start", "-x"]   # parsing stops at the action
    f = parse_flags(["-debug=false", "-v=1", "--", "-namespace"])
    assert (f.debug, f.v, f.args, f.namespace) == (False, True, ["-namespace"], "")
    assert parse_flags(["-bundle", "/b", "delete"]).bundle == "/b"
    assert parse_flags([]).publish_binary == "containerd"        # Go's default


@pytest.mark.parametrize("argv, message", [
    (["-nope"], "flag provided but not defined: -nope"),
    (["-id"], "flag needs an argument: -id"),
    (["-debug=maybe"], 'invalid boolean value "maybe" for -debug'),
    (["---id", "x"], "bad flag syntax: ---id"),
])
def test_flag_errors(argv: list, message: str) -> None:
    with pytest.raises(pidsafe.UsageError, match=message):
        parse_flags(argv)


def test_main_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v"]) == 0
    assert "containerd-shim-pidsafe-v1" in capsys.readouterr().out
    assert main(["-id", "x", "start"]) == 1          # no namespace: Go's message
    assert capsys.readouterr().err == "containerd-shim-pidsafe-v1: shim namespace cannot be empty"
    assert main(["-namespace", "n", "bogus"]) == 1
    assert "unknown action 'bogus'" in capsys.readouterr().err
    assert main(["-nope"]) == 2
    assert "Usage of containerd-shim-pidsafe-v1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        main(["-h"])
    assert ei.value.code == 0


def test_the_console_script(tmp_path: Path) -> None:
    """Installed by pip with a concrete interpreter (never ``env python3``)."""
    assert SHIM.exists(), "pip install . makes the console script"
    first = SHIM.read_text().splitlines()[0]
    assert first.startswith("#!/") and not first.startswith("#!/usr/bin/env"), first
    assert os.access(first[2:].split()[0], os.X_OK)
    res = subprocess.run([str(SHIM), "-namespace", "n", "-id", "x", "start"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    # No config.json: start fails, as Go's does ("<name>: <error>", status 1).
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("containerd-shim-pidsafe-v1: read config.json")
    assert "Traceback" not in res.stderr
