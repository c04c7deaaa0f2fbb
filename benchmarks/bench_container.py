"""pidsafe.Container in-process against crun, runc and bwrap, in one run.

    .venv/bin/python benchmarks/bench_container.py [--rounds N] [--batch N] [--heap-mib N]

Root only.  One busybox bundle (built here from Debian's busybox-static),
with a user namespace mapping 0 -> 100000 (65536 ids) and new mount, pid,
ipc, uts and network namespaces, running ``/bin/true``:

- ``pidsafe create+start+wait+delete``: ``pidsafe.Container`` in this
  process, the rootfs an idmapped bind (``rootfs_mounts`` with
  ``uidmap=``/``gidmap=``), as a shim would use it;
- ``pidsafe exec``: ``Container.exec(["/bin/true"])`` + wait, into a
  running container;
- ``crun run`` and ``runc run`` of the same bundle (Debian's packages), each
  with a private ``--root``;
- ``bwrap``: a bubblewrap sandbox with user, pid and mount namespaces;
- ``plain spawn``: ``pidsafe.spawn(["/bin/true"])`` + wait, the floor.

Every method is timed at an empty heap and with a 1 GiB heap touched in
this process (the caller's memory must not slow container creation), in
interleaved rounds; a ratio is the median of per-round ratios.

crun 1.8 refuses this machine's hybrid cgroups, so (as ../shared/peers does)
the benchmark re-runs itself in a private mount namespace with
``/sys/fs/cgroup/unified`` unmounted; every method runs in that view.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _harness import (Method, ensure_tools, print_checks, private_mounts,  # noqa: E402
                      run_interleaved, timed)
from bundles import build_busybox_rootfs, runc_spec  # noqa: E402  (the tests' own image)

import pidsafe  # noqa: E402

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
PACKAGES = {"crun": "crun", "runc": "runc", "bwrap": "bubblewrap"}


def make_bundle(work: pathlib.Path) -> pathlib.Path:
    bundle = work / "bundle"
    bundle.mkdir()
    busybox = next(p for p in ("/bin/busybox", "/usr/bin/busybox") if os.access(p, os.X_OK))
    build_busybox_rootfs(bundle / "rootfs", busybox)
    doc = runc_spec(["/bin/true"])
    doc["linux"]["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                         "mount", "user")]
    doc["linux"]["uidMappings"] = MAP
    doc["linux"]["gidMappings"] = MAP
    doc["linux"].pop("resources", None)   # pidsafe applies none without cgroupsPath here
    doc["mounts"] = [m for m in doc["mounts"] if m["type"] not in ("cgroup", "sysfs")]
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--heap-mib", type=int, default=1024)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_container.py needs root")
    private_mounts()
    ensure_tools(PACKAGES)
    work = pathlib.Path(tempfile.mkdtemp(prefix="pidsafe-bench-container-"))
    os.chmod(work, 0o755)   # runc and crun reach the rootfs as the mapped root
    try:
        run(work, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: pathlib.Path, opts: argparse.Namespace) -> None:
    bundle = make_bundle(work)
    # The idmapped rootfs: the image's files, seen through uidmap= as the
    # container's root.
    layer = work / "layer"
    shutil.move(str(bundle / "rootfs"), str(layer))
    (bundle / "rootfs").mkdir(mode=0o755)
    rootfs_mounts = [pidsafe.Mount("bind", str(layer), "", [
        "rbind", "uidmap=0:100000:65536", "gidmap=0:100000:65536"])]
    rt_bundle = work / "rt-bundle"           # crun/runc/bwrap: the plain rootfs
    rt_bundle.mkdir()
    doc = json.loads((bundle / "config.json").read_text())
    doc["root"]["path"] = str(layer)
    (rt_bundle / "config.json").write_text(json.dumps(doc))
    state = work / "state"
    state.mkdir()
    counter = [0]
    # State lives on tmpfs, as under /run on a real host (runtimes' --root too):
    # the state file's fsyncs are then as cheap as they are there.
    runtime_roots = work / "roots"
    runtime_roots.mkdir()
    for d in (state, runtime_roots):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=700", "tmpfs", str(d)], check=True)

    def cycle() -> None:
        counter[0] += 1
        c = pidsafe.Container.create(f"b{counter[0]}", bundle, state_dir=str(state),
                                     rootfs_mounts=rootfs_mounts)
        c.start()
        if c.wait() != 0:
            raise SystemExit("container exited non-zero")
        c.delete()

    keeper = pidsafe.Container.create("keeper", make_sleeper(work, bundle), state_dir=str(state),
                                      rootfs_mounts=rootfs_mounts)
    keeper.start()

    def exec_true() -> None:
        counter[0] += 1
        with keeper.exec(["/bin/true"], exec_id=f"e{counter[0]}") as p:
            if p.wait() != 0:
                raise SystemExit("exec exited non-zero")

    def runtime(tool: str) -> Method:
        root = runtime_roots / tool
        root.mkdir()

        def one() -> None:
            counter[0] += 1
            subprocess.run([tool, "--root", str(root), "run", "--bundle", str(rt_bundle),
                            f"r{counter[0]}"], check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        return timed(one)

    def bwrap() -> None:
        subprocess.run(["bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", str(layer), "/",
                        "--proc", "/proc", "--dev", "/dev", "/bin/true"], check=True,
                       stdin=subprocess.DEVNULL, timeout=60)

    def plain() -> None:
        with pidsafe.spawn(["/bin/true"]) as p:
            p.wait()

    methods: Dict[str, Method] = {
        "pidsafe create+start+wait+delete": timed(cycle),
        "pidsafe exec": timed(exec_true),
        "crun run": runtime("crun"),
        "runc run": runtime("runc"),
        "bwrap": timed(bwrap),
        "plain spawn": timed(plain),
    }
    try:
        results = run_interleaved(methods, rounds=opts.rounds, heap_mib=opts.heap_mib,
                                  batch=lambda name, big: opts.batch)
    finally:
        keeper.delete(force=True)
        for d in (state, runtime_roots):
            subprocess.run(["umount", str(d)], check=True)
    (small, _), (big, _) = results.heaps
    names: List[str] = list(methods)
    print(f"\npidsafe {pidsafe.__version__} container benchmark: /bin/true, user+mount+pid+ipc+"
          f"uts+net namespaces, {opts.rounds} rounds x {opts.batch}; cgroup v1 view: "
          f"{'yes' if os.environ.get('BENCH_CGFIX') else 'no'}")
    print(f"{'method':<34}{'empty heap':>12}{big + ' heap':>16}{big + '/empty':>14}"
          f"{'vs crun run':>14}")
    for name in names:
        print(f"{name:<34}{results.us(name, small) / 1000:>9.2f} ms"
              f"{results.us(name, big) / 1000:>13.2f} ms"
              f"{results.ratio((name, big), (name, small)):>13.2f}x"
              f"{results.ratio((name, small), ('crun run', small)):>13.2f}x")
    cyc = "pidsafe create+start+wait+delete"
    print()
    print_checks([
        ("pidsafe cycle / crun run (empty heap)",
         results.ratio((cyc, small), ("crun run", small)), 0.5, "x"),
        (f"pidsafe cycle {big} heap / empty heap", results.ratio((cyc, big), (cyc, small)),
         1.1, "x"),
    ])


def make_sleeper(work: pathlib.Path, bundle: pathlib.Path) -> pathlib.Path:
    """A copy of the bundle whose program sleeps, for exec to go into."""
    sleeper = work / "sleeper"
    sleeper.mkdir()
    (sleeper / "rootfs").mkdir(mode=0o755)
    doc = json.loads((bundle / "config.json").read_text())
    doc["process"]["args"] = ["/bin/sleep", "100000"]
    (sleeper / "config.json").write_text(json.dumps(doc))
    return sleeper


if __name__ == "__main__":
    main()
