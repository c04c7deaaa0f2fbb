"""containerd-shim-pidsafe-v1 against containerd's runc shim (with runc, and with crun).

    .venv/bin/python benchmarks/bench_shim.py [--runs N] [--rss N] [--json FILE]

One private containerd 1.6 (Debian's; own root, state and sockets), the
tests' busybox image, ``ctr run --rm IMAGE ID /bin/true`` through:

- ``pidsafe``: this checkout's ``.venv/bin/containerd-shim-pidsafe-v1``
  (``--runtime /abs/path``): containers in-process, no runtime binary;
- ``runc``: ``io.containerd.runc.v2`` (containerd-shim-runc-v2) driving runc;
- ``crun``: the same shim driving crun (``--runc-binary``).

Runs are interleaved (one of each, in a fresh random order, per round);
median and p90 per runtime, and the ratio of medians.  Then, for the
pidsafe shim only, where the time goes: each RPC as the daemon timed it
(``PIDSAFE_SHIM_TRACE``), the ``start`` and ``delete`` actions as their
own processes timed them, and ``python -c pass`` for the interpreter's
share.  Last, the daemon's resident memory serving 1 and N containers
(``--rss``; one daemon: they share ``io.containerd.runc.v2.group``), and
the runc shim's for one.

As in bench_runtime_cli.py, crun 1.8 refuses this machine's hybrid
cgroups, so the benchmark re-runs itself in a private mount namespace with
``/sys/fs/cgroup/unified`` unmounted; containerd and every shim run there.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _harness import (add_json_arg, checks_json, machine, p90, print_checks,  # noqa: E402
                      runtime_work, write_json)
from bench_runtime_cli import IMAGE, NS, Containerd  # noqa: E402
from bundles import build_busybox_rootfs  # noqa: E402  (the tests' own image)
sys.path.insert(0, str(HERE.parent / "scripts"))
import oci_image  # noqa: E402

SHIM = HERE.parent / ".venv" / "bin" / "containerd-shim-pidsafe-v1"
PYTHON = HERE.parent / ".venv" / "bin" / "python"
PACKAGES = {"crun": "crun", "runc": "runc", "containerd": "containerd"}


class Daemon(Containerd):
    """bench_runtime_cli's private containerd, its state and the runtimes' roots on a
    tmpfs (as /run is on most machines: runc's and our state files are written
    there), the shim trace in its environment."""

    def __init__(self, work: pathlib.Path, rootfs: pathlib.Path, trace: pathlib.Path) -> None:
        self.work = work
        self.sock = str(work / "containerd.sock")
        self.count = 0
        self.tmpfs = work / "run"
        for d in ("root", "tmp", "run"):
            (work / d).mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=711", "tmpfs", str(self.tmpfs)],
                       check=True)
        for d in ("state", "runtime-roots"):
            (self.tmpfs / d).mkdir()
            os.symlink(self.tmpfs / d, work / d)
        (work / "config.toml").write_text(f"""version = 2
root = "{work}/root"
state = "{self.tmpfs}/state"
temp = "{work}/tmp"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"
""")
        self.log = open(work / "containerd.log", "wb")
        env = dict(os.environ, PIDSAFE_SHIM_TRACE=str(trace))   # passed on to its shims
        self.proc: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            ["containerd", "--config", str(work / "config.toml")], stdout=self.log,
            stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 20
        while subprocess.run(self.ctr("version"), capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise SystemExit(f"containerd did not come up; see {work}/containerd.log")
            time.sleep(0.1)
        oci_image.build(str(rootfs), str(work / "image.tar"), IMAGE)
        subprocess.run(self.ctr("images", "import", str(work / "image.tar")), check=True,
                       capture_output=True)

    def close(self) -> None:
        super().close()   # which unmounts everything under work/, the tmpfs too

    def run_args(self, runtime: str) -> List[str]:
        if runtime == "pidsafe":
            return ["--runtime", str(SHIM)]
        root = self.work / "runtime-roots" / runtime
        return ["--runtime", "io.containerd.runc.v2", "--runc-binary",
                shutil.which(runtime) or runtime, "--runc-root", str(root)]

    def run_rm(self, runtime: str) -> float:
        """One ``ctr run --rm ... /bin/true``; its wall time in ms."""
        self.count += 1
        argv = self.ctr("run", "--rm", *self.run_args(runtime), IMAGE,
                        f"{runtime}-{self.count}", "/bin/true")
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, timeout=60)
        ms = (time.perf_counter() - t0) * 1000
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {res.returncode} {res.stderr.decode()}")
        return ms


def reap_orphans() -> None:
    """Collect the exited shim daemons reparented to us (between runs: no
    subprocess of ours is waiting then)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))


def shim_pid(daemon: Daemon, name: str) -> int:
    """The one live shim process whose argv names ``name`` and our containerd's socket."""
    mine = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(name.encode() in a for a in argv[:2]) and any(
                a == b"-address" and b == daemon.sock.encode() for a, b in zip(argv, argv[1:])):
            mine.append(int(entry))
    assert len(mine) == 1, (name, mine)
    return mine[0]


def measure_rss(daemon: Daemon, n: int) -> Dict[str, int]:
    """The pidsafe daemon's RSS with 1 and ``n`` containers; the runc shim's with 1."""
    out: Dict[str, int] = {}
    ids: List[str] = []

    def run_d(runtime: str, cid: str, group: bool) -> None:
        extra = ["--annotation", "io.containerd.runc.v2.group=rss"] if group else []
        subprocess.run(daemon.ctr("run", "-d", *extra, *daemon.run_args(runtime), IMAGE, cid,
                                  "sleep", "600"), check=True, capture_output=True, timeout=60)
        ids.append(cid)

    try:
        run_d("runc", "rss-runc", False)
        out["runc shim, 1 container"] = rss_kib(shim_pid(daemon, "containerd-shim-runc-v2"))
        for i in range(n):
            run_d("pidsafe", f"rss-{i}", True)
            if i == 0:
                out["pidsafe shim, 1 container"] = rss_kib(shim_pid(daemon, "containerd-shim-pidsafe-v1"))
        out[f"pidsafe shim, {n} containers"] = rss_kib(shim_pid(daemon, "containerd-shim-pidsafe-v1"))
    finally:
        for cid in ids:
            subprocess.run(daemon.ctr("task", "kill", "-s", "KILL", cid), capture_output=True)
        for cid in ids:
            for _ in range(100):
                st = subprocess.run(daemon.ctr("task", "ls"), capture_output=True,
                                    text=True).stdout
                if not any(line.split()[:1] == [cid] and "RUNNING" in line
                           for line in st.splitlines()):
                    break
                time.sleep(0.05)
            subprocess.run(daemon.ctr("task", "rm", cid), capture_output=True)
            subprocess.run(daemon.ctr("container", "rm", cid), capture_output=True)
    return out


def process_ms(argv: List[str], n: int, **kw: Any) -> List[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def phases(trace: pathlib.Path) -> Dict[str, List[float]]:
    """Per RPC and action, the durations (ms) the pidsafe shim recorded."""
    out: Dict[str, List[float]] = {}
    serving: Dict[int, float] = {}
    starts: Dict[int, float] = {}
    for line in trace.read_text().splitlines():
        ev = json.loads(line)
        if "rpc" in ev:
            out.setdefault(f"RPC {ev['rpc']}", []).append((ev["t1"] - ev["t0"]) * 1000)
            out.setdefault(f"RPC {ev['rpc']} (CPU)", []).append(ev.get("cpu", 0) * 1000)
        elif "action" in ev:
            out.setdefault(f"{ev['action']} action (in Python)", []).append(
                (ev["t1"] - ev["t0"]) * 1000)
            out.setdefault(f"{ev['action']} action (process CPU)", []).append(
                ev.get("cpu", 0) * 1000)
            if ev["action"] == "start":
                starts[ev["pid"]] = ev["t0"]
        elif ev.get("event") == "serving":
            serving[ev["pid"]] = ev["t"]
            out.setdefault("daemon CPU until serving (after fork)", []).append(
                ev.get("cpu", 0) * 1000)
    # The daemon is forked by start: its pid is start's + something; pair them in order.
    for (_, t0), (_, t1) in zip(sorted(starts.items(), key=lambda x: x[1]),
                                sorted(serving.items(), key=lambda x: x[1])):
        out.setdefault("start entry -> daemon serving", []).append((t1 - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="ctr run --rm per runtime")
    ap.add_argument("--rss", type=int, default=20, help="containers in one daemon for RSS")
    add_json_arg(ap)
    opts = ap.parse_args()
    # containerd is no subreaper: the shims' daemons (runc's and ours), orphaned
    # by their start action, come to us; reap_orphans() collects them.
    with runtime_work("bench_shim.py", SHIM, PACKAGES, "pidsafe-bench-shim-") as work:
        run(work, opts)


def run(work: pathlib.Path, opts: argparse.Namespace) -> None:
    start = machine()
    rootfs = work / "rootfs"
    busybox = next(p for p in ("/bin/busybox", "/usr/bin/busybox") if os.access(p, os.X_OK))
    build_busybox_rootfs(rootfs, busybox)
    trace = work / "trace.jsonl"
    (work / "containerd").mkdir()
    daemon = Daemon(work / "containerd", rootfs, trace)
    runtimes = ["pidsafe", "runc", "crun"]
    times: Dict[str, List[float]] = {r: [] for r in runtimes}
    try:
        for r in runtimes:      # warm-up: page cache, snapshot, first-run set-up
            daemon.run_rm(r)
        trace.write_text("")
        for rnd in range(opts.runs):
            order = list(runtimes)
            random.shuffle(order)
            for r in order:
                times[r].append(daemon.run_rm(r))
            reap_orphans()
            print(f"round {rnd + 1}/{opts.runs} done", file=sys.stderr)
        where = phases(trace)
        rss = measure_rss(daemon, opts.rss)
    finally:
        daemon.close()
        reap_orphans()
    bundle = work / "bundle"
    bundle.mkdir()
    (bundle / "init.pid").write_text("1")
    where["delete action (process)"] = process_ms(
        [str(SHIM), "-namespace", NS, "-address", "/x", "-publish-binary", "containerd",
         "-id", "gone", "-bundle", str(bundle), "delete"], opts.runs)
    where["python -c pass (the venv's)"] = process_ms([str(PYTHON), "-c", "pass"], opts.runs)

    med = {r: statistics.median(t) for r, t in times.items()}
    print(f"\nctr run --rm /bin/true through containerd {containerd_version()}, "
          f"{opts.runs} interleaved runs each; cgroup v1 view: "
          f"{'yes' if os.environ.get('BENCH_CGFIX') else 'no'}")
    print(f"{'runtime':<28}{'median':>10}{'p90':>10}{'vs runc':>10}")
    for r in runtimes:
        print(f"{r:<28}{med[r]:>7.1f} ms{p90(times[r]):>7.1f} ms{med[r] / med['runc']:>9.2f}x")
    print("\nwhere the pidsafe shim's time goes (ms):")
    print(f"{'part':<36}{'median':>10}{'p90':>10}{'n':>6}")
    for name in sorted(where):
        v = where[name]
        print(f"{name:<36}{statistics.median(v):>10.1f}{p90(v):>10.1f}{len(v):>6}")
    print("\nshim daemon resident memory:")
    for name, kib in rss.items():
        print(f"  {name:<34}{kib / 1024:>8.1f} MiB")
    print()
    ratio = med["pidsafe"] / med["runc"]
    checks = [("pidsafe ctr run --rm / runc shim + runc", ratio, 0.75, "x"),
              ("delete action (ms)", statistics.median(where["delete action (process)"]),
               25.0, " ms"),
              ("Create RPC (ms)", statistics.median(where.get("RPC Create", [0.0])), 20.0,
               " ms"),
              ("daemon RSS, 1 container (MiB)", rss["pidsafe shim, 1 container"] / 1024,
               30.0, " MiB")]
    print_checks(checks)
    write_json(opts.json, {
        "title": "containerd shim: ctr run --rm /bin/true", "machine_start": start,
        "runs": opts.runs, "ctr_run_rm_ms": times, "medians_ms": med,
        "phases_ms": where, "rss_kib": rss, "checks": checks_json(checks)})


def containerd_version() -> str:
    out = subprocess.run(["containerd", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if len(out.split()) > 2 else "?"


if __name__ == "__main__":
    main()
