"""Operations that need root say so: a PrivilegeError, not a bare PermissionError.

Each check runs in a child that imports all of pidsafe as root, then drops
to uid/gid 65534 (nobody) with no capabilities left, and reports what the
operation raised as JSON.  (Importing first: the checkout, or the
interpreter's standard library, may be where nobody cannot read.)
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any, Dict

import pytest

import pidsafe

pytestmark = pytest.mark.root

PRELUDE = """
import argparse, asyncio, json, locale, os, pkgutil, importlib, selectors, signal, subprocess
import sys
import pidsafe
for m in pkgutil.walk_packages(pidsafe.__path__, "pidsafe."):
    if not m.name.startswith(("pidsafe.shim", "pidsafe.cli.__main__")):
        importlib.import_module(m.name)
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
# Changing uids made us non-dumpable (our /proc files root's): a process
# that ran as nobody from the start is dumpable.
pidsafe._sys.set_dumpable(True)

def report(op):
    try:
        op()
    except BaseException as exc:
        out = {"types": [c.__name__ for c in type(exc).__mro__], "str": str(exc),
               "errno": getattr(exc, "errno", None),
               "operation": getattr(exc, "operation", None),
               "capability": getattr(exc, "capability", None)}
    else:
        out = {"types": []}
    print(json.dumps(out))
"""


def as_nobody(code: str) -> Dict[str, Any]:
    """Run ``code`` (which calls ``report(op)``) as nobody; what ``op`` raised."""
    r = pidsafe.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                    capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out: Dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
    return out


def test_creating_a_container_without_root(tmp_path: Any) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    got = as_nobody(f"""
        report(lambda: pidsafe.Container.create("c1", "/nonexistent", state_dir={str(state)!r}))
    """)
    assert "PrivilegeError" in got["types"] and "PermissionError" in got["types"], got
    assert got["operation"] == "create a container"
    assert "CAP_SYS_ADMIN" in got["capability"]
    assert got["str"].startswith("[Errno 1] create a container needs CAP_SYS_ADMIN")
    assert list(state.iterdir()) == []   # checked before anything was made (or read)


def test_writing_a_cgroup_without_root() -> None:
    from pidsafe.container import CgroupLayout

    layout = CgroupLayout.detect()
    top = (layout.v2 or layout.v1[0]).mountpoint
    got = as_nobody(f"""
        from pidsafe.container.cgroup._files import write_file
        report(lambda: write_file({top + "/cgroup.procs"!r}, "1"))
    """)
    assert {"CgroupError", "PrivilegeError", "PermissionError"} <= set(got["types"]), got
    assert "delegated" in got["capability"] and "unable to write '1'" in got["operation"]
    assert "needs root" in got["str"]


def test_an_idmapped_mount_without_root(tmp_path: Any) -> None:
    got = as_nobody("""
        userns = open("/proc/self/ns/user", "rb")
        report(lambda: pidsafe.idmapped_bind("/tmp", "/tmp", userns))
    """)
    assert {"MountError", "PrivilegeError", "PermissionError"} <= set(got["types"]), got
    assert got["capability"] == "CAP_SYS_ADMIN" and got["errno"] == 1
    assert got["operation"] == "unable to clone mount tree of /tmp"


def test_a_user_namespace_mapping_other_ids_without_root() -> None:
    got = as_nobody("""
        report(lambda: pidsafe.get_userns_fd("0:100000:65536", "0:100000:65536"))
    """)
    if "PrivilegeError" not in got["types"] and got["errno"] in (1, 28):
        # Unprivileged user namespaces are off: creating one is refused first.
        assert "user namespace" in got["str"]
        return
    assert "PrivilegeError" in got["types"], got
    assert got["operation"].startswith("write uid_map (0:100000:65536)")
    assert got["capability"] == "CAP_SETUID in the parent user namespace"


def test_pidsafe_runc_create_without_root_says_so() -> None:
    code = PRELUDE + textwrap.dedent("""
        from pidsafe.cli import runc
        sys.exit(runc.main(["--root", "/nonexistent", "create", "--bundle", "/nonexistent", "c1"]))
    """)
    r = pidsafe.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "create a container needs CAP_SYS_ADMIN (root)" in r.stderr


def test_root_gets_no_privilege_error_for_other_causes() -> None:
    """EPERM as root is something else: the error is not a PrivilegeError."""
    from pidsafe.container.cgroup._files import privilege_needed
    from pidsafe.mount._hints import _privilege

    assert privilege_needed(1) == privilege_needed(13) == "" and _privilege(1) == ""

