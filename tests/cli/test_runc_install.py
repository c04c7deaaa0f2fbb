"""``pip install .`` (not editable, a fresh venv) gives a pidsafe-runc that runs.

pidsafe-runc is a plain script (setup.py's ``scripts=``), not a console
script: pip rewrites its first line to the venv's interpreter when it
installs the wheel.  This builds the package from a copy of the checkout's
tracked files (a build writes ``build/`` into its source) with pip's own
build isolation, as a user's install does, and runs the installed command
through ``PATH``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

CHECKOUT = pathlib.Path(__file__).resolve().parent.parent.parent


def tracked_files() -> list[str]:
    r = subprocess.run(["git", "-C", str(CHECKOUT), "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("not a git checkout: nothing to copy the sources from")
    return [f for f in r.stdout.decode().split("\0") if f]


def test_pip_install_gives_a_working_pidsafe_runc(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src"
    for name in tracked_files():
        if (CHECKOUT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0 and "No matching distribution" in r.stderr:
        pytest.skip(f"pip cannot reach an index for the build's requirements: {r.stderr}")
    assert r.returncode == 0, r.stderr
    script = venv / "bin" / "pidsafe-runc"
    lines = script.read_text().splitlines()
    assert lines[0] == f"#!{venv / 'bin' / 'python'}" or lines[0].startswith(
        f"#!{venv / 'bin' / 'python'}"), lines[0]
    assert "from pidsafe.cli.runc import entry" in lines and "import re" not in lines
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(["pidsafe-runc", "--version"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("pidsafe-runc version "), out
    # A command that loads the package's layers, with a state root of our own.
    out = subprocess.run(["pidsafe-runc", "--root", str(tmp_path / "root"), "delete", "--force",
                          "none"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=60)
    assert out.returncode == 0, out
    # The installed package, not this checkout's.
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import pidsafe.cli.runc as m; print(m.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert where.stdout.startswith(str(venv)), where
