"""scripts/: the container demo that scripts/main.sh runs after `pidsafe doctor`."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import demo_container  # noqa: E402


@pytest.mark.root
def test_demo_runs_busybox_as_mapped_root_on_an_idmapped_read_only_rootfs(
        tmp_path: pathlib.Path) -> None:
    if demo_container.static_busybox() is None:
        pytest.skip("needs a static busybox (scripts/bootstrap.sh installs it as root)")
    # Its image and rootfs mount under our basetemp: other xdist workers'
    # leak checks ignore mounts there, not in /tmp.
    r = subprocess.run([sys.executable, str(SCRIPTS / "demo_container.py")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for step in ("image", "bundle", "create", "start", "wait", "delete", "total"):
        assert f"  {step} " in out
    assert "I am uid=0(root) gid=0(root)" in out        # root inside ...
    assert "0     100000      65536" in out              # ... which is host uid 100000
    assert "/ is root:root" in out and "read-only: yes" in out   # idmapped, read-only
    assert "hostname pidsafe-demo, pid 1" in out
    assert "(exit status 0)" in out


def test_demo_says_what_it_skips_without_root(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exc:
        demo_container.main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("container demo skipped: not root")
    assert "pidsafe doctor" in out


def test_demo_says_what_it_skips_without_a_static_busybox(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(demo_container, "static_busybox", lambda: None)
    with pytest.raises(SystemExit) as exc:
        demo_container.main()
    assert exc.value.code == 0
    assert "no static busybox" in capsys.readouterr().out
