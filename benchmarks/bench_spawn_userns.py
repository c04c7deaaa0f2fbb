"""Spawn + wait of /bin/true into user namespaces, against a plain spawn.

    .venv/bin/python benchmarks/bench_spawn_userns.py [--rounds N] [--batch N] [--heap-mib N]

``spawn(uidmap=)`` and ``spawn(userns=)`` run through the exec'd static
helper (csrc/helper/): one more exec, of a small static binary, plus the
READY/go exchange (and for ``uidmap=`` the map writes).  Methods, each one
spawn of /bin/true plus waiting for its exit:

- ``pidsafe.spawn``: no namespaces (no helper); the baseline.
- ``spawn(namespaces=NEWUTS)``: a namespace from clone3 itself, no helper.
- ``spawn(userns=fd)``: join a cached user namespace through the helper.
- ``spawn(uidmap=, gidmap=)``: a new user namespace through the helper.
- ``C posix_spawn+waitid``: benchmarks/cref_spawn.c, the floor.

Run as root (the maps map other users' ids).  Interleaved rounds with an
empty and a ``--heap-mib`` heap, as bench_spawn.py.
"""

from __future__ import annotations

import argparse
import os
import sys

import pidsafe
from _harness import (add_json_arg, checks_json, machine, print_checks, print_heap_table,
                      run_interleaved, timed, write_json)
from bench_spawn import TRUE, build_cref

MAP = "0:100000:65536"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=30, help="spawns per method per round")
    ap.add_argument("--heap-mib", type=int, default=1024)
    add_json_arg(ap)
    ns = ap.parse_args()
    start = machine()
    if os.geteuid() != 0:
        print("bench_spawn_userns: run as root (the maps map other users' ids)", file=sys.stderr)
        return 2

    userns = pidsafe.get_userns_fd(MAP, MAP)

    def run(**kw: object) -> None:
        p = pidsafe.spawn([TRUE], **kw)  # type: ignore[arg-type]
        p.wait()
        p.close()

    ref = "C posix_spawn+waitid"
    plain = "pidsafe.spawn"
    methods = {
        ref: build_cref(),
        plain: timed(lambda: run()),
        "spawn(namespaces=NEWUTS)": timed(lambda: run(namespaces=pidsafe.Namespace.NEWUTS)),
        "spawn(userns=fd)": timed(lambda: run(userns=userns)),
        "spawn(uidmap=, gidmap=)": timed(lambda: run(uidmap=MAP, gidmap=MAP)),
    }
    try:
        res = run_interleaved(methods, rounds=ns.rounds, heap_mib=ns.heap_mib,
                              batch=lambda name, big: ns.batch)
    finally:
        userns.close()
    (small, _), (big, _) = res.heaps
    print()
    print(f"spawn + wait of {TRUE} into user namespaces: {ns.rounds} interleaved rounds, "
          f"{ns.batch} spawns per method per round; kernel {os.uname().release}, "
          f"{os.cpu_count()} CPUs")
    print("times: median over rounds; ratios: median over rounds of the ratio "
          "within each round")
    print()
    print_heap_table(res, list(methods), plain, "plain", width=26)
    print()
    checks = []
    for name in ("spawn(userns=fd)", "spawn(uidmap=, gidmap=)"):
        for heap in (small, big):
            checks.append((f"{name} / pidsafe.spawn, {heap} heap",
                           res.ratio((name, heap), (plain, heap)), 3.0, "x"))
        checks.append((f"{name} {big} heap / empty heap",
                       res.ratio((name, big), (name, small)), 1.15, "x"))
    print_checks(checks)
    write_json(ns.json, {"title": f"spawn + wait of {TRUE} into user namespaces",
                         "machine_start": start, "rounds": ns.rounds, "batch": ns.batch,
                         "ref": ref, "results": res.to_json(ref), "checks": checks_json(checks)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
