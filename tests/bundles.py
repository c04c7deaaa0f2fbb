"""Container test images: a busybox rootfs and runc's default config (fixtures via conftest)."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
from typing import Any, Callable, Dict, Iterator, List

import pytest

BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.access(p, os.X_OK)), None)
CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def runc_spec(args: List[str] = ["sh"]) -> Dict[str, Any]:  # noqa: B006 - read-only default
    """What `runc spec` writes (runc 1.1), with terminal off: the common case."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(args),
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"], "cwd": "/",
            "capabilities": {k: list(CAPS) for k in ("bounding", "effective", "permitted",
                                                      "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/sys"],
        },
    }


def _ensure_busybox() -> str:
    if BUSYBOX is None:
        pytest.skip("needs a static busybox (Debian's busybox-static; scripts/bootstrap.sh "
                    "installs it as root)")
    return BUSYBOX


def build_busybox_rootfs(root: pathlib.Path, busybox: str) -> pathlib.Path:
    """``root`` made an image: busybox with every applet linked, /etc/passwd, /etc/group.

    (Also used by benchmarks/bench_container.py.)
    """
    bb = busybox
    root.mkdir(mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    for d in ("bin", "dev", "etc", "home", "proc", "root", "run", "sys", "tmp", "var/tmp",
              "usr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.symlink("bin", root / "sbin")
    os.symlink("../bin", root / "usr/bin")
    os.symlink("../bin", root / "usr/sbin")
    shutil.copy2(bb, root / "bin/busybox")
    applets = subprocess.run([bb, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", root / "bin" / a)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    return root


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A read-only template image, built once per session."""
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox-rootfs"), _ensure_busybox())


Bundle = Callable[..., pathlib.Path]


@pytest.fixture
def make_bundle(busybox_rootfs: pathlib.Path, tmp_path: pathlib.Path) -> Bundle:
    """make_bundle(args, edit=None) -> a bundle dir with a fresh copy of the rootfs."""
    count = [0]

    def make(args: List[str], edit: Callable[[Dict[str, Any]], None] = lambda d: None
             ) -> pathlib.Path:
        count[0] += 1
        bundle = tmp_path / f"bundle{count[0]}"
        shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
        os.chmod(bundle / "rootfs", 0o755)   # reachable by a user namespace's root
        doc = copy.deepcopy(runc_spec(args))
        edit(doc)
        (bundle / "config.json").write_text(json.dumps(doc))
        return bundle

    return make


@pytest.fixture
def state_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A state directory that must be empty again when the test ends."""
    d = tmp_path / "state"
    d.mkdir()
    yield d
    left = sorted(os.listdir(d))
    assert left == [], f"state left behind: {left}"
