"""The main job, shown: a busybox container in a user namespace on an idmapped rootfs.

    .venv/bin/python scripts/demo_container.py

Everything happens in this process through ``pidsafe.Container``: an OCI
bundle is written (runc's default config, plus a user namespace mapping
container ids 0-65535 to host ids 100000-165535), the busybox image is
bound onto the bundle's rootfs through that mapping (an idmapped mount: the
image's root-owned files are the container root's, nothing is chowned),
and busybox ``sh`` runs a few commands inside.  Each step is printed with
what it did and how long it took.

Needs root (user namespaces mapping other users' ids, mounts, cgroups) and
a static busybox (Debian's busybox-static; scripts/bootstrap.sh installs it
as root).  Without them it says what it skips and why, and exits 0.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional
from contextlib import contextmanager

MAP = "0:100000:65536"
OCI_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
SCRIPT = ('echo "  | I am $(id)"; echo "  | hostname $(hostname), pid $$"; '
          'echo "  | uid_map: $(cat /proc/self/uid_map)"; '
          'echo "  | / is $(stat -c "%U:%G %A" /), read-only: $(touch /x 2>/dev/null && echo no || echo yes)"; '
          'echo "  | processes: $(ls /proc | grep -c "^[0-9]")"; '
          'echo "  | network: $(ls /sys/class/net | tr "\\n" " ")"; exit 0')


def static_busybox() -> Optional[str]:
    """A statically linked busybox on this machine, or None."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.access(path, os.X_OK):
            with open(path, "rb") as f:
                head = f.read(1 << 16)
            # An ELF with a PT_INTERP segment names its dynamic loader.
            if b"ld-linux" not in head and b"/lib64/ld" not in head:
                return path
    return None


def skip(reason: str) -> None:
    print(f"container demo skipped: {reason}")
    sys.exit(0)


def build_image(root: pathlib.Path, busybox: str) -> int:
    """``root`` made a busybox image (every applet a link); the applet count."""
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", root / "bin" / a)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return len(applets)


def config(args: List[str]) -> Dict[str, Any]:
    """runc's default config.json (``runc spec``), no terminal, plus a user namespace."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"], "cwd": "/",
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted",
                                                       "ambient")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pidsafe-demo",
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
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "user")],
            "uidMappings": OCI_MAP, "gidMappings": OCI_MAP,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/sys"],
        },
    }


@contextmanager
def step(name: str, what: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    ms = (time.perf_counter() - t0) * 1000
    print(f"  {name:<8}{ms:8.2f} ms  {what}")


def main() -> None:
    if sys.platform != "linux":
        skip("pidsafe runs on Linux only")
    if os.geteuid() != 0:
        skip("not root: a user namespace mapping ids 100000-165535, mounts and cgroups need "
             "root (as root: bash scripts/main.sh). What a non-root user can do is in "
             "`pidsafe doctor` above: spawn, and user namespaces that map only your own id.")
    busybox = static_busybox()
    if busybox is None:
        skip("no static busybox (as root: apt-get install busybox-static, or run "
             "scripts/bootstrap.sh)")
    import pidsafe

    run_dir = "/run" if os.path.isdir("/run") else None
    work = pathlib.Path(tempfile.mkdtemp(prefix="pidsafe-demo-"))
    state = tempfile.mkdtemp(prefix="pidsafe-demo-state-", dir=run_dir)
    os.chmod(work, 0o755)   # the container's root (host uid 100000) walks through it
    container: Optional[pidsafe.Container] = None
    print(f"pidsafe {pidsafe.__version__}: a busybox container, in this process "
          f"(pid {os.getpid()})")
    t_all = time.perf_counter()
    try:
        with step("image", f"busybox copied into {work}/image, applets linked"):
            applets = build_image(work / "image", busybox)
        print(f"{'':20}({applets} applets; files owned by host uid 0)")
        bundle = work / "bundle"
        with step("bundle", "config.json: runc's defaults + user namespace " + MAP):
            (bundle / "rootfs").mkdir(parents=True, mode=0o755)
            (bundle / "config.json").write_text(json.dumps(config(["/bin/sh", "-c", SCRIPT])))
        rootfs = [pidsafe.Mount("bind", str(work / "image"), "", (
            "rbind", f"uidmap={MAP}", f"gidmap={MAP}"))]
        cid = f"demo-{os.getpid()}"
        with step("create", f"container {cid!r}: image bound idmapped onto the rootfs, "
                  "init cloned held by a pidfd (user, mount, pid, ipc, uts, net "
                  "namespaces), mounts, pivot_root; waits at its gate"):
            container = pidsafe.Container.create(cid, bundle, state_dir=state,
                                                 rootfs_mounts=rootfs, stdout=pidsafe.PIPE)
        init = container.process()
        assert init is not None and init.stdout is not None
        print(f"{'':20}(init is host pid {container.pid}; state in {state})")
        with step("start", "gate opened; the exec of /bin/sh confirmed"):
            container.start()
        with step("wait", "init's exit, through its pidfd; its output:"):
            output = init.stdout.read().decode(errors="replace")
            code = container.wait(timeout=30)
        sys.stdout.write(output)
        print(f"{'':20}(exit status {code})")
        with step("delete", "rootfs unmounted, cgroups and state removed"):
            container.delete()
        container = None
        print(f"  {'total':<8}{(time.perf_counter() - t_all) * 1000:8.2f} ms  (a first "
              "container pays for imports and cold caches; benchmarks/bench_container.py "
              "times warm ones)")
        if code != 0:
            sys.exit(f"the container's shell exited {code}")
    except pidsafe.Error as exc:
        sys.exit(f"container demo failed: {exc}")
    finally:
        if container is not None:
            container.delete(force=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
