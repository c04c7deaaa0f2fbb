"""Spawn + wait of /bin/true: pidsafe.spawn against the alternatives.

    .venv/bin/python benchmarks/bench_spawn.py [--rounds N] [--batch N] [--heap-mib N]

Methods, each timed as one spawn of /bin/true plus waiting for its exit:

- ``C posix_spawn+waitid``: a C loop (benchmarks/cref_spawn.c, compiled here
  into benchmarks/.build/) called through ctypes, so it runs inside this
  process, big heap included.  The floor.
- ``pidsafe.spawn``: ``pidsafe.spawn([...]).wait()`` then ``close()``.
- ``subprocess.run``: the standard library.
- ``posix_spawn+pidfd_open``: ``os.posix_spawn`` then ``os.pidfd_open`` (racy
  by construction: the pidfd is opened after the fact) and
  ``os.waitid(P_PIDFD)``.
- ``os.fork+exec``: ``os.fork()``, ``os.execv`` in the child, ``os.waitpid``.

Every method runs with an empty heap and with ``--heap-mib`` MiB (default
1024) of touched heap, in interleaved rounds within one run, so that machine
noise hits all of them alike.  Reported: the median over rounds of the mean
time per spawn, and for each ratio the median over rounds of the ratio
between two methods measured in the same round (pairing in time cancels
most of the drift of a shared, noisy machine).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import pidsafe

HERE = pathlib.Path(__file__).resolve().parent
TRUE = "/bin/true"


def build_cref() -> Callable[[int], float]:
    """Compile the C reference (if stale) and return ns-per-spawn(n)."""
    src = HERE / "cref_spawn.c"
    out = HERE / ".build" / "cref_spawn.so"
    out.parent.mkdir(exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    lib = ctypes.CDLL(str(out))
    fn = lib.cref_spawn_wait
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def run(n: int) -> float:
        ns = fn(TRUE.encode(), n)
        if ns < 0:
            raise RuntimeError("C reference failed")
        return ns / n

    return run


def timed(body: Callable[[], None]) -> Callable[[int], float]:
    def run(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            body()
        return (time.perf_counter_ns() - t0) / n

    return run


def m_pidsafe() -> None:
    p = pidsafe.spawn([TRUE])
    p.wait()
    p.close()


def m_subprocess() -> None:
    subprocess.run([TRUE])


def m_posix_spawn_pidfd() -> None:
    pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    fd = os.pidfd_open(pid)
    try:
        os.waitid(os.P_PIDFD, fd, os.WEXITED)
    finally:
        os.close(fd)


def m_fork_exec() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.execv(TRUE, [TRUE])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def touch_heap(mib: int) -> bytearray:
    """``mib`` MiB that are really resident: one write per page."""
    heap = bytearray(mib << 20)
    page = os.sysconf("SC_PAGE_SIZE")
    heap[::page] = b"\x01" * len(range(0, len(heap), page))
    return heap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=30, help="spawns per method per round")
    ap.add_argument("--fork-big-batch", type=int, default=3,
                    help="spawns per round for os.fork with the big heap (slow by design)")
    ap.add_argument("--heap-mib", type=int, default=1024)
    ns = ap.parse_args()

    methods: Dict[str, Callable[[int], float]] = {
        "C posix_spawn+waitid": build_cref(),
        "pidsafe.spawn": timed(m_pidsafe),
        "subprocess.run": timed(m_subprocess),
        "posix_spawn+pidfd_open": timed(m_posix_spawn_pidfd),
        "os.fork+exec": timed(m_fork_exec),
    }
    heaps = (("empty", 0), (f"{ns.heap_mib} MiB", ns.heap_mib))
    results: Dict[Tuple[str, str], List[float]] = {}
    for name in methods:  # warm-up: page cache, the .so, pidsafe's probes
        methods[name](3)
    gc.disable()
    try:
        for rnd in range(ns.rounds):
            for heap_name, mib in heaps:
                heap = touch_heap(mib) if mib else None
                order = list(methods)
                random.shuffle(order)
                for name in order:
                    n = ns.batch
                    if heap is not None and name == "os.fork+exec":
                        n = ns.fork_big_batch
                    results.setdefault((name, heap_name), []).append(methods[name](n))
                del heap
            print(f"round {rnd + 1}/{ns.rounds} done", file=sys.stderr)
    finally:
        gc.enable()

    med = {k: statistics.median(v) / 1000 for k, v in results.items()}  # us
    small, big = heaps[0][0], heaps[1][0]
    ref = "C posix_spawn+waitid"

    def ratio(a: Tuple[str, str], b: Tuple[str, str]) -> float:
        """Median over rounds of a/b, each pair measured in the same round."""
        return statistics.median(x / y for x, y in zip(results[a], results[b]))

    print()
    print(f"spawn + wait of {TRUE}: {ns.rounds} interleaved rounds, {ns.batch} spawns "
          f"per method per round; kernel {os.uname().release}, {os.cpu_count()} CPUs")
    print("times: median over rounds; ratios: median over rounds of the ratio "
          "within each round")
    print()
    header = (f"{'method':<24}{'empty heap':>13}{big + ' heap':>16}{big + '/empty':>16}"
              f"{'vs C, empty':>13}{'vs C, ' + big:>17}")
    print(header)
    print("-" * len(header))
    for name in methods:
        a, b = med[(name, small)], med[(name, big)]
        print(f"{name:<24}{a:>10.1f} us{b:>13.1f} us"
              f"{ratio((name, big), (name, small)):>15.2f}x"
              f"{ratio((name, small), (ref, small)):>12.2f}x"
              f"{ratio((name, big), (ref, big)):>16.2f}x")
    print()
    ps = "pidsafe.spawn"
    checks = []
    for heap_name in (small, big):
        checks.append((f"pidsafe.spawn / C reference, {heap_name} heap",
                       ratio((ps, heap_name), (ref, heap_name)), 1.10))
        checks.append((f"pidsafe.spawn / subprocess.run, {heap_name} heap",
                       ratio((ps, heap_name), ("subprocess.run", heap_name)), 1.00))
    checks.append((f"pidsafe.spawn {big} heap / empty heap", ratio((ps, big), (ps, small)), 1.15))
    print(f"{'target':<52}{'ratio':>8}{'limit':>8}  verdict")
    for what, r, limit in checks:
        print(f"{what:<52}{r:>7.2f}x{limit:>7.2f}x  {'ok' if r <= limit else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
