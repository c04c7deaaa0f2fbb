"""A user namespace with maps, as an fd: pidsafe against C references.

    .venv/bin/python benchmarks/bench_userns.py [--rounds N] [--batch N] [--heap-mib N]

Methods, each timed as one user namespace with the maps 0:100000:65536 made,
its fd obtained, and closed again (the helper killed and reaped):

- ``C clone(CLONE_VM) helper``: benchmarks/cref_userns.c, the design
  pidsafe.get_userns_fd follows (helper sharing our memory, on a small
  mmap'd stack), in C with no Python.  The floor.
- ``C fork-style helper``: the same in C with a helper that is a copy of us
  (containerd's ForkUserns: clone(SIGCHLD|CLONE_NEWUSER|CLONE_PIDFD), no
  CLONE_VM): its page tables are copied, so it slows down as we grow.
- ``pidsafe.get_userns_fd``.
- ``UsernsCache hit``: ``cache.get(m, m)`` for maps already cached (a dup of
  the cached fd), then ``close()``.

The C references are compiled by this script (gcc, into benchmarks/.build/)
and called through ctypes, so they run inside this process, big heap
included.  Every method runs with an empty heap and with ``--heap-mib`` MiB
(default 1024) of touched heap, in interleaved rounds of one run, the order
shuffled per round.  Reported: the median over rounds of the mean time per
call, and each ratio as the median over rounds of the ratio between two
methods measured in the same round (pairing in time cancels most of the
drift of a shared, noisy machine).  Needs root (maps of other ids).
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
MAP = "0:100000:65536"


def build_cref() -> Tuple[Callable[[int], float], Callable[[int], float]]:
    """Compile the C references (if stale); return ns-per-call(n) for each."""
    src = HERE / "cref_userns.c"
    out = HERE / ".build" / "cref_userns.so"
    out.parent.mkdir(exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(out), str(src)],
                       check=True)
    lib = ctypes.CDLL(str(out))
    text = pidsafe.IDMap.parse(MAP).to_kernel().encode()

    def method(fn: "ctypes._NamedFuncPointer") -> Callable[[int], float]:
        fn.restype = ctypes.c_int64
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]

        def run(n: int) -> float:
            ns = fn(n, text, text)
            if ns < 0:
                raise RuntimeError(f"C reference {fn.__name__} failed")
            return ns / n

        return run

    return method(lib.cref_userns_clone_vm), method(lib.cref_userns_fork)


def timed(body: Callable[[], None]) -> Callable[[int], float]:
    def run(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            body()
        return (time.perf_counter_ns() - t0) / n

    return run


def touch_heap(mib: int) -> bytearray:
    """``mib`` MiB that are really resident: one write per page."""
    heap = bytearray(mib << 20)
    page = os.sysconf("SC_PAGE_SIZE")
    heap[::page] = b"\x01" * len(range(0, len(heap), page))
    return heap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=100, help="calls per method per round")
    ap.add_argument("--fork-big-batch", type=int, default=10,
                    help="calls per round for the fork-style helper with the big heap")
    ap.add_argument("--hit-batch", type=int, default=2000, help="cache hits per round")
    ap.add_argument("--heap-mib", type=int, default=1024)
    ns = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_userns: run as root (the maps map other users' ids)", file=sys.stderr)
        return 2

    m = pidsafe.IDMap.parse(MAP)
    cache = pidsafe.UsernsCache()
    cache.get(m, m).close()

    def m_get() -> None:
        pidsafe.get_userns_fd(m, m).close()

    def m_hit() -> None:
        cache.get(m, m).close()

    c_vm, c_fork = build_cref()
    methods: Dict[str, Callable[[int], float]] = {
        "C clone(CLONE_VM) helper": c_vm,
        "C fork-style helper": c_fork,
        "pidsafe.get_userns_fd": timed(m_get),
        "UsernsCache hit": timed(m_hit),
    }
    heaps = (("empty", 0), (f"{ns.heap_mib} MiB", ns.heap_mib))
    results: Dict[Tuple[str, str], List[float]] = {}
    for name in methods:  # warm-up
        methods[name](5)
    gc.disable()
    try:
        for rnd in range(ns.rounds):
            for heap_name, mib in heaps:
                heap = touch_heap(mib) if mib else None
                order = list(methods)
                random.shuffle(order)
                for name in order:
                    n = ns.batch
                    if name == "UsernsCache hit":
                        n = ns.hit_batch
                    elif heap is not None and name == "C fork-style helper":
                        n = ns.fork_big_batch
                    results.setdefault((name, heap_name), []).append(methods[name](n))
                del heap
            print(f"round {rnd + 1}/{ns.rounds} done", file=sys.stderr)
    finally:
        gc.enable()
        cache.close()

    med = {k: statistics.median(v) / 1000 for k, v in results.items()}  # us
    small, big = heaps[0][0], heaps[1][0]
    ref = "C clone(CLONE_VM) helper"

    def ratio(a: Tuple[str, str], b: Tuple[str, str]) -> float:
        """Median over rounds of a/b, each pair measured in the same round."""
        return statistics.median(x / y for x, y in zip(results[a], results[b]))

    print()
    print(f"user namespace {MAP} as an fd: {ns.rounds} interleaved rounds, {ns.batch} calls "
          f"per method per round; kernel {os.uname().release}, {os.cpu_count()} CPUs")
    print("times: median over rounds; ratios: median over rounds of the ratio "
          "within each round")
    print()
    header = (f"{'method':<28}{'empty heap':>13}{big + ' heap':>16}{big + '/empty':>16}"
              f"{'vs C VM, empty':>16}{'vs C VM, ' + big:>20}")
    print(header)
    print("-" * len(header))
    for name in methods:
        a, b = med[(name, small)], med[(name, big)]
        print(f"{name:<28}{a:>10.1f} us{b:>13.1f} us"
              f"{ratio((name, big), (name, small)):>15.2f}x"
              f"{ratio((name, small), (ref, small)):>15.2f}x"
              f"{ratio((name, big), (ref, big)):>19.2f}x")
    print()
    g = "pidsafe.get_userns_fd"
    checks = []
    for heap_name in (small, big):
        checks.append((f"get_userns_fd / C CLONE_VM reference, {heap_name} heap",
                       ratio((g, heap_name), (ref, heap_name)), 1.25, "x"))
    checks.append((f"get_userns_fd {big} heap / empty heap", ratio((g, big), (g, small)),
                   1.20, "x"))
    for heap_name in (small, big):
        checks.append((f"UsernsCache hit, {heap_name} heap (us)", med[("UsernsCache hit",
                                                                       heap_name)], 20.0, ""))
    print(f"{'target':<56}{'value':>9}{'limit':>9}  verdict")
    for what, r, limit, unit in checks:
        print(f"{what:<56}{r:>8.2f}{unit or ' '}{limit:>8.2f}{unit or ' '}  "
              f"{'ok' if r <= limit else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
