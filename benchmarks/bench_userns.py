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
import os
import sys
from typing import Callable, Dict, Tuple

import pidsafe
from _harness import (Method, add_json_arg, checks_json, compile_cref, machine, print_checks,
                      print_heap_table, run_interleaved, timed, write_json)

MAP = "0:100000:65536"


def build_cref() -> Tuple[Method, Method]:
    """The C references (benchmarks/cref_userns.c): ns per call for each."""
    lib = compile_cref("cref_userns")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=100, help="calls per method per round")
    ap.add_argument("--fork-big-batch", type=int, default=10,
                    help="calls per round for the fork-style helper with the big heap")
    ap.add_argument("--hit-batch", type=int, default=2000, help="cache hits per round")
    ap.add_argument("--heap-mib", type=int, default=1024)
    add_json_arg(ap)
    ns = ap.parse_args()
    start = machine()
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

    def batch(name: str, big: bool) -> int:
        if name == "UsernsCache hit":
            return int(ns.hit_batch)
        if big and name == "C fork-style helper":
            return int(ns.fork_big_batch)
        return int(ns.batch)

    try:
        res = run_interleaved(methods, rounds=ns.rounds, heap_mib=ns.heap_mib, batch=batch,
                              warmup=5)
    finally:
        cache.close()
    (small, _), (big, _) = res.heaps
    ref = "C clone(CLONE_VM) helper"

    print()
    print(f"user namespace {MAP} as an fd: {ns.rounds} interleaved rounds, {ns.batch} calls "
          f"per method per round; kernel {os.uname().release}, {os.cpu_count()} CPUs")
    print("times: median over rounds; ratios: median over rounds of the ratio "
          "within each round")
    print()
    print_heap_table(res, list(methods), ref, "C VM")
    print()
    g = "pidsafe.get_userns_fd"
    checks = []
    for heap_name in (small, big):
        checks.append((f"get_userns_fd / C CLONE_VM reference, {heap_name} heap",
                       res.ratio((g, heap_name), (ref, heap_name)), 1.25, "x"))
    checks.append((f"get_userns_fd {big} heap / empty heap", res.ratio((g, big), (g, small)),
                   1.20, "x"))
    for heap_name in (small, big):
        checks.append((f"UsernsCache hit, {heap_name} heap (us)",
                       res.us("UsernsCache hit", heap_name), 20.0, ""))
    print_checks(checks)
    write_json(ns.json, {"title": f"user namespace {MAP} as an fd", "machine_start": start,
                         "rounds": ns.rounds, "batch": ns.batch, "ref": ref,
                         "results": res.to_json(ref), "checks": checks_json(checks)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
