"""An idmapped bind mount (and its unmount): pidsafe against a C reference.

    .venv/bin/python benchmarks/bench_mount.py [--rounds N] [--batch N]

Methods, each timed as one idmapped bind of a directory (map 0:100000:65536,
recursive, read-write) onto another, and the plain ``umount2()`` that undoes
it:

- ``C reference``: benchmarks/cref_mount.c, the same
  open_tree -> mount_setattr -> move_mount -> close -> umount2 sequence in C
  with no Python.  The floor.
- ``pidsafe.idmapped_bind``: the public call, then ``umount2()`` through
  pidsafe's own shim (pidsafe has no public unmount of a single mount).

The C reference is compiled by this script (gcc, into benchmarks/.build/)
and called through ctypes.  Both use the same user namespace (one
``pidsafe.get_userns_fd``) and directories on the filesystem of ``--dir``
(default: the temp dir).  The methods run in interleaved rounds of one run,
the order shuffled per round.  Reported: the median over rounds of the mean
time per call, the bind alone and bind + umount, and each ratio as the median
over rounds of the ratio measured within the same round.  The target
(idmapped_bind <= 1.3x its C reference) is on bind + umount, the sequence
the C reference runs; the bind alone is shown too, where Python's fixed cost
per call weighs most.  Needs root.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import pidsafe
from pidsafe import _sys
from pidsafe.mount._mount import describe_fs
from _harness import add_json_arg, compile_cref, machine, write_json

MAP = "0:100000:65536"

#: run(n) -> (mean ns of the bind, mean ns of the umount)
Method = Callable[[int], Tuple[float, float]]


def build_cref(src: str, dst: str, userns_fd: int) -> Method:
    """Compile the C reference (if stale); return its run(n)."""
    fn = compile_cref("cref_mount").cref_idmapped_bind
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                   ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    src_b, dst_b = os.fsencode(src), os.fsencode(dst)

    def run(n: int) -> Tuple[float, float]:
        umount_ns = ctypes.c_int64(0)
        bind_ns = fn(n, src_b, dst_b, userns_fd, 1, 0, ctypes.byref(umount_ns))
        if bind_ns < 0:
            raise OSError(-bind_ns, f"C reference: {os.strerror(-bind_ns)}")
        return bind_ns / n, umount_ns.value / n

    return run


def pidsafe_method(src: str, dst: str, userns: pidsafe.OwnedFd) -> Method:
    def run(n: int) -> Tuple[float, float]:
        clock = time.perf_counter_ns
        bind = unmount = 0
        for _ in range(n):
            t0 = clock()
            pidsafe.idmapped_bind(src, dst, userns)
            t1 = clock()
            _sys.umount2(dst, 0)
            t2 = clock()
            bind += t1 - t0
            unmount += t2 - t1
        return bind / n, unmount / n

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=200, help="binds per method per round")
    ap.add_argument("--dir", default=None, help="where to make the source and target dirs")
    add_json_arg(ap)
    ns = ap.parse_args()
    start = machine()
    if os.geteuid() != 0:
        print("bench_mount: run as root (mounts)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="pidsafe-bench-mount-", dir=ns.dir) as tmp, \
            pidsafe.get_userns_fd(MAP, MAP) as userns:
        src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
        os.mkdir(src)
        os.mkdir(dst)
        fs = describe_fs(src)
        methods: Dict[str, Method] = {
            "C reference": build_cref(src, dst, userns.fileno()),
            "pidsafe.idmapped_bind": pidsafe_method(src, dst, userns),
        }
        for m in methods.values():  # warm-up
            m(10)
        results: Dict[str, List[Tuple[float, float]]] = {name: [] for name in methods}
        gc.disable()
        try:
            for rnd in range(ns.rounds):
                order = list(methods)
                random.shuffle(order)
                for name in order:
                    results[name].append(methods[name](ns.batch))
                print(f"round {rnd + 1}/{ns.rounds} done", file=sys.stderr)
        finally:
            gc.enable()

    ref = "C reference"

    def med(name: str, part: Callable[[Tuple[float, float]], float]) -> float:
        return statistics.median(part(r) for r in results[name]) / 1000  # us

    def ratio(name: str, part: Callable[[Tuple[float, float]], float]) -> float:
        return statistics.median(part(a) / part(b) for a, b in zip(results[name], results[ref]))

    def bind(r: Tuple[float, float]) -> float:
        return r[0]

    def both(r: Tuple[float, float]) -> float:
        return r[0] + r[1]

    print()
    print(f"idmapped bind {MAP} + umount: {ns.rounds} interleaved rounds, {ns.batch} per "
          f"method per round; {fs}; kernel {os.uname().release}, {os.cpu_count()} CPUs")
    print("times: median over rounds; ratios: median over rounds of the ratio "
          "within each round")
    print()
    header = (f"{'method':<24}{'bind':>11}{'bind+umount':>15}{'bind vs C':>12}"
              f"{'bind+umount vs C':>19}")
    print(header)
    print("-" * len(header))
    for name in methods:
        print(f"{name:<24}{med(name, bind):>8.1f} us{med(name, both):>12.1f} us"
              f"{ratio(name, bind):>11.2f}x{ratio(name, both):>18.2f}x")
    print()
    r = ratio("pidsafe.idmapped_bind", both)
    print(f"{'target':<48}{'value':>8}{'limit':>8}  verdict")
    print(f"{'idmapped_bind + umount / C reference':<48}{r:>7.2f}x{1.3:>7.2f}x  "
          f"{'ok' if r <= 1.3 else 'MISSED'}")
    print(f"{'(no target) idmapped_bind alone / C reference':<48}"
          f"{ratio('pidsafe.idmapped_bind', bind):>7.2f}x")
    write_json(ns.json, {
        "title": f"idmapped bind {MAP} + umount", "machine_start": start, "rounds": ns.rounds,
        "batch": ns.batch, "fs": str(fs), "ref": ref,
        "methods": {name: {"bind_us": med(name, bind), "bind_umount_us": med(name, both),
                           "bind_vs_ref": ratio(name, bind), "bind_umount_vs_ref": ratio(name, both),
                           "rounds_ns": [list(x) for x in results[name]]}
                    for name in methods},
        "checks": [{"target": "idmapped_bind + umount / C reference", "value": r, "limit": 1.3,
                    "unit": "x", "ok": r <= 1.3}],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
