"""Pods through containerd's CRI: the ``pidsafe`` runtime handler against ``runc``.

    .venv/bin/python benchmarks/bench_cri.py [--rounds N] [--rss-pods N] [--json FILE]

One private containerd 1.6 (the tests' own, tests/ctrd: CRI on, handlers
``runc`` = containerd-shim-runc-v2 + runc and ``pidsafe`` = this checkout's
containerd-shim-pidsafe-v1, host-network pods, the tests' pause and busybox
images), driven over CRI gRPC.  One pod start is RunPodSandbox +
CreateContainer + StartContainer (``sleep 600``), timed from the client;
its teardown (StopPodSandbox, RemovePodSandbox) is not timed.

At each load (1 pod, then 10 pods at once) the handlers take turns, one
round each in a fresh random order per round.  Per handler and load: p50
and p99 of a pod's start, pods per second (pods of a round / the round's
wall time, median over rounds), and the ratio pidsafe / runc.  containerd's state directory (the bundles,
and pidsafe's state in them) and runc's root are on a tmpfs, as
``/run/containerd`` is on a node.  Last, the
shims' resident memory (VmRSS) per pod, with ``--rss-pods`` pods of one
container each running: one shim per pod for both handlers.

Targets: pidsafe's latency at most 0.75x runc's at both loads,
shim memory per pod at most 1.5x the runc shim's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _harness import (add_json_arg, checks_json, machine, print_checks,  # noqa: E402
                      write_json)

HANDLERS = ("runc", "pidsafe")
LOADS = (1, 10)


def percentile(xs: List[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation (statistics' 'inclusive')."""
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Bench:
    def __init__(self, daemon: Any, cri: Any) -> None:
        self.daemon = daemon
        self.cri = cri
        self.count = 0

    def start_pod(self, handler: str) -> Tuple[str, float]:
        """One pod started: its id and the seconds it took."""
        self.count += 1
        pod = self.cri.pod_config(f"bench{self.count}")
        t0 = time.perf_counter()
        pod_id = self.cri.run_pod(pod, handler)
        cid = self.cri.create_container(pod_id, pod, "app", ["sleep", "600"])
        self.cri.start_container(cid)
        return pod_id, time.perf_counter() - t0

    def remove(self, pod_ids: List[str]) -> None:
        for pod_id in pod_ids:
            self.cri.stop_pod(pod_id)
            self.cri.remove_pod(pod_id)

    def round(self, handler: str, load: int, pool: ThreadPoolExecutor
              ) -> Tuple[List[float], float]:
        """``load`` pods started at once: each one's seconds, and the pods per second."""
        t0 = time.perf_counter()
        done = list(pool.map(lambda _: self.start_pod(handler), range(load)))
        wall = time.perf_counter() - t0
        self.remove([pod_id for pod_id, _ in done])
        return [s for _, s in done], load / wall

    def shim_rss(self, handler: str, pods: int) -> Tuple[float, int]:
        """KiB of shim RSS per pod with ``pods`` running, and how many shims there were."""
        ids = [self.start_pod(handler)[0] for _ in range(pods)]
        try:
            shims = self.daemon.shim_pids()
            total = sum(rss_kib(pid) for pid in shims)
        finally:
            self.remove(ids)
        return total / pods, len(shims)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20,
                    help="rounds per handler at load 1 (at load 10: a fifth, at least 2)")
    ap.add_argument("--rss-pods", type=int, default=5)
    add_json_arg(ap)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_cri.py: needs root (containerd, mounts, cgroups)")
    if not os.environ.get("BENCH_CRI_PRIVATE"):    # our tmpfs mounts stay ours
        os.environ["BENCH_CRI_PRIVATE"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private",
                              sys.executable, *sys.argv])
    from ctrd.cri import CriClient
    from ctrd.daemon import BUSYBOX_IMAGE, CRI_NAMESPACE, PAUSE_IMAGE, Containerd
    from ctrd.fixtures import build_pause

    with tempfile.TemporaryDirectory(prefix="bench-cri-", dir="/tmp") as tmp:
        daemon = Containerd(pathlib.Path(tmp))
        # containerd's state (bundles, and in them pidsafe's state) and runc's root on
        # a tmpfs, as /run/containerd is on a node: fsync is free there.
        tmpfs = [daemon.dir / "state", pathlib.Path(daemon.runc_root)]
        for d in tmpfs:
            d.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=711", "tmpfs", str(d)],
                           check=True)
        try:
            daemon.start()
            rootfs = build_pause(daemon.dir / "pause-rootfs")
            daemon.import_image(daemon.build_image(rootfs, PAUSE_IMAGE, entrypoint=["/pause"],
                                                   cmd=[]), CRI_NAMESPACE)
            daemon.import_busybox(CRI_NAMESPACE)
            with CriClient(daemon.address, cgroup_parent=daemon.cgroup_parent,
                           image=BUSYBOX_IMAGE, timeout=120) as cri:
                doc = run(Bench(daemon, cri), opts)
        finally:
            for d in tmpfs:     # ours only: containerd's mount namespace keeps its copy
                subprocess.run(["umount", "-l", str(d)], check=True)
            problems = [p for p in daemon.close()
                        if p not in {f"mount {d}" for d in tmpfs}]   # gone with its namespace
    if problems:
        print("left behind:", *problems, sep="\n  ", file=sys.stderr)
    write_json(opts.json, doc)


def run(bench: Bench, opts: argparse.Namespace) -> Dict[str, Any]:
    lat: Dict[Tuple[str, int], List[float]] = {(h, n): [] for h in HANDLERS for n in LOADS}
    rate: Dict[Tuple[str, int], List[float]] = {(h, n): [] for h in HANDLERS for n in LOADS}
    with ThreadPoolExecutor(max(LOADS)) as pool:
        for h in HANDLERS:                        # warm up: images, page cache, imports
            bench.round(h, 1, pool)
        for load in LOADS:
            rounds = opts.rounds if load == 1 else max(2, opts.rounds // 5)
            for _ in range(rounds):
                for h in random.sample(HANDLERS, len(HANDLERS)):
                    seconds, per_s = bench.round(h, load, pool)
                    lat[h, load] += seconds
                    rate[h, load].append(per_s)
    rss = {h: bench.shim_rss(h, opts.rss_pods) for h in HANDLERS}

    print(f"CRI pod start (RunPodSandbox + CreateContainer + StartContainer), ms; "
          f"{opts.rounds} rounds at load 1")
    print(f"{'handler':<9} {'load':>4} {'n':>4} {'p50':>8} {'p99':>8} {'pods/s':>7}")
    rows = []
    for load in LOADS:
        for h in HANDLERS:
            xs = lat[h, load]
            row = {"handler": h, "load": load, "n": len(xs),
                   "p50_ms": percentile(xs, 0.5) * 1e3, "p99_ms": percentile(xs, 0.99) * 1e3,
                   "pods_per_s": statistics.median(rate[h, load])}
            rows.append(row)
            print(f"{h:<9} {load:>4} {len(xs):>4} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}"
                  f" {row['pods_per_s']:>7.2f}")
    print(f"\nshim RSS per pod ({opts.rss_pods} pods, one container each), MiB:")
    for h in HANDLERS:
        kib, shims = rss[h]
        print(f"{h:<9} {kib / 1024:6.1f}  ({shims} shim processes)")

    def get(h: str, load: int, key: str) -> float:
        return float(next(r[key] for r in rows if r["handler"] == h and r["load"] == load))

    checks = []
    for load in LOADS:
        for key in ("p50_ms", "p99_ms"):
            checks.append((f"pod start {key[:3]} at load {load} (pidsafe/runc)",
                           get("pidsafe", load, key) / get("runc", load, key), 0.75, "x"))
    checks.append(("shim RSS per pod (pidsafe/runc)", rss["pidsafe"][0] / rss["runc"][0],
                   1.5, "x"))
    print()
    print_checks(checks)
    return {"machine": machine(), "rows": rows,
            "rss_kib_per_pod": {h: rss[h][0] for h in HANDLERS},
            "checks": checks_json(checks)}


if __name__ == "__main__":
    main()
