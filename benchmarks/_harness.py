"""What every pidsafe benchmark does the same way.

- C references live in ``benchmarks/<name>.c`` and are compiled here into
  ``benchmarks/.build/<name>.so`` (when stale), then called through ctypes,
  so they run inside the benchmark's own process, big heap included.
- Methods are timed in interleaved rounds, in a fresh random order each
  round, at each heap size; a ratio is the median over rounds of the ratio
  between two methods measured in the same round, which cancels most of the
  drift of a shared, noisy machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import pathlib
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

HERE = pathlib.Path(__file__).resolve().parent

#: A method: given n, run n operations and return nanoseconds per operation.
Method = Callable[[int], float]
Key = Tuple[str, str]


def compile_cref(name: str) -> ctypes.CDLL:
    """Build ``benchmarks/<name>.c`` into a shared library (if stale); load it."""
    src = HERE / f"{name}.c"
    out = HERE / ".build" / f"{name}.so"
    out.parent.mkdir(exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(out), str(src)],
                       check=True)
    return ctypes.CDLL(str(out))


def compile_cref_exe(name: str) -> str:
    """Build ``benchmarks/<name>.c`` into a program (if stale); its path."""
    src = HERE / f"{name}.c"
    out = HERE / ".build" / name
    out.parent.mkdir(exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return str(out)


def p90(xs: Sequence[float]) -> float:
    """The 90th percentile (nearest rank)."""
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def machine() -> Dict[str, Any]:
    """What a result depends on: kernel, CPUs, Python, load average now."""
    return {"kernel": os.uname().release, "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "loadavg": list(os.getloadavg())}


def add_json_arg(ap: Any) -> None:
    """``--json FILE``: also write the results there, machine-readable."""
    ap.add_argument("--json", metavar="FILE", default=None,
                    help="also write the results to FILE as JSON (for benchmarks/report.py)")


def write_json(path: Optional[str], doc: Dict[str, Any]) -> None:
    """Write ``doc`` (plus ``argv`` and the machine) to ``path``, if given."""
    if path is None:
        return
    doc = {"benchmark": pathlib.Path(sys.argv[0]).stem, "argv": sys.argv[1:],
           "machine_end": machine(), **doc}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def timed(body: Callable[[], None]) -> Method:
    """A Python method: ``body()`` n times, ns per call."""
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


class Results:
    """Per-round ns/op of each (method, heap), and the ratios between them."""

    def __init__(self, heaps: Sequence[Tuple[str, int]]) -> None:
        self.heaps = list(heaps)
        self.runs: Dict[Key, List[float]] = {}

    def us(self, name: str, heap: str) -> float:
        """Median over rounds, in microseconds."""
        return statistics.median(self.runs[(name, heap)]) / 1000

    def ratio(self, a: Key, b: Key) -> float:
        """Median over rounds of a/b, each pair measured in the same round."""
        return statistics.median(x / y for x, y in zip(self.runs[a], self.runs[b]))

    def to_json(self, ref: Optional[str] = None) -> Dict[str, Any]:
        """Per method and heap: ns/op of each round, the median in us, and (with
        ``ref``) the ratio to ``ref`` at the same heap; big/empty per method."""
        names = list(dict.fromkeys(name for name, _ in self.runs))
        out: Dict[str, Any] = {"heaps": [h for h, _ in self.heaps], "ref": ref, "methods": {}}
        for name in names:
            m: Dict[str, Any] = {}
            for heap, _ in self.heaps:
                if (name, heap) not in self.runs:
                    continue
                cell: Dict[str, Any] = {"rounds_ns": self.runs[(name, heap)],
                                        "median_us": self.us(name, heap)}
                if ref is not None and (ref, heap) in self.runs:
                    cell["vs_ref"] = self.ratio((name, heap), (ref, heap))
                m[heap] = cell
            if len(self.heaps) == 2:
                (small, _), (big, _) = self.heaps
                m["big_vs_empty"] = self.ratio((name, big), (name, small))
            out["methods"][name] = m
        return out


def cpu_ns() -> int:
    """CPU time so far, in ns: this process's (user + system, every thread)
    plus that of its children it has reaped (``getrusage(2)``).

    On a shared machine wall time also counts the time others held our CPU;
    CPU time does not.  The kernel adds a child's time to its parent's
    ``RUSAGE_CHILDREN`` when the child is reaped, so an operation that reaps
    its own children is charged for them too.
    """
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime) * 1e9)


def cpu_timed(method: Method) -> Method:
    """``method`` timed by :func:`cpu_ns` instead of the clock it reports.

    For ``--clock cpu``: a method that returns wall ns per operation (a C
    reference timing itself) is charged its CPU time instead.
    """
    def run(n: int) -> float:
        t0 = cpu_ns()
        method(n)
        return (cpu_ns() - t0) / n

    return run


def run_interleaved(methods: Dict[str, Method], *, rounds: int, heap_mib: int,
                    batch: Callable[[str, bool], int], warmup: int = 3,
                    clock: str = "wall") -> Results:
    """Time every method at an empty and a ``heap_mib`` MiB touched heap.

    ``batch(name, big_heap)`` says how many operations one timing takes.
    ``clock``: ``"wall"`` (what each method reports), or ``"cpu"``: the
    CPU time of this process and of the children it reaped meanwhile
    (:func:`cpu_timed`).
    """
    if clock == "cpu":
        methods = {name: cpu_timed(m) for name, m in methods.items()}
    elif clock != "wall":
        raise ValueError(f"clock must be 'wall' or 'cpu', not {clock!r}")
    results = Results((("empty", 0), (f"{heap_mib} MiB", heap_mib)))
    for name in methods:  # page cache, the .so, pidsafe's probes
        methods[name](warmup)
    gc.disable()
    try:
        for rnd in range(rounds):
            for heap_name, mib in results.heaps:
                heap: Optional[bytearray] = touch_heap(mib) if mib else None
                order = list(methods)
                random.shuffle(order)
                for name in order:
                    ns = methods[name](batch(name, heap is not None))
                    results.runs.setdefault((name, heap_name), []).append(ns)
                del heap
            print(f"round {rnd + 1}/{rounds} done", file=sys.stderr)
    finally:
        gc.enable()
    return results


def run_rounds(methods: Dict[str, Method], *, rounds: int, batch: int,
               warmup: int = 1) -> Results:
    """Time every method in interleaved rounds, in a fresh random order each round.

    For methods that run in other processes (a runtime's CLI), where this
    process's heap does not matter: one heap column, named ``"-"``.
    """
    results = Results((("-", 0),))
    for name in methods:   # page cache, first-run set-up
        methods[name](warmup)
    for rnd in range(rounds):
        order = list(methods)
        random.shuffle(order)
        for name in order:
            results.runs.setdefault((name, "-"), []).append(methods[name](batch))
        print(f"round {rnd + 1}/{rounds} done", file=sys.stderr)
    return results


def print_heap_table(results: Results, methods: Sequence[str], ref: str, ref_label: str,
                     width: int = 28) -> None:
    """Times at both heaps, big/empty, and each method against ``ref``."""
    (small, _), (big, _) = results.heaps
    header = (f"{'method':<{width}}{'empty heap':>13}{big + ' heap':>16}{big + '/empty':>16}"
              f"{'vs ' + ref_label + ', empty':>18}{'vs ' + ref_label + ', ' + big:>22}")
    print(header)
    print("-" * len(header))
    for name in methods:
        print(f"{name:<{width}}{results.us(name, small):>10.1f} us"
              f"{results.us(name, big):>13.1f} us"
              f"{results.ratio((name, big), (name, small)):>15.2f}x"
              f"{results.ratio((name, small), (ref, small)):>17.2f}x"
              f"{results.ratio((name, big), (ref, big)):>21.2f}x")


def checks_json(checks: Sequence[Tuple[str, float, float, str]]) -> List[Dict[str, Any]]:
    """``print_checks``' rows as JSON."""
    return [{"target": what, "value": value, "limit": limit, "unit": unit, "ok": value <= limit}
            for what, value, limit, unit in checks]


def print_checks(checks: Sequence[Tuple[str, float, float, str]]) -> None:
    """``(what, value, limit, unit)`` rows with an ok/MISSED verdict."""
    print(f"{'target':<56}{'value':>9}{'limit':>9}  verdict")
    for what, value, limit, unit in checks:
        print(f"{what:<56}{value:>8.2f}{unit or ' '}{limit:>8.2f}{unit or ' '}  "
              f"{'ok' if value <= limit else 'MISSED'}")


def private_mounts() -> None:
    """Re-exec in a private mount namespace (our tmpfs mounts stay ours), and
    there without the cgroup2 mount on a hybrid host: crun 1.8 refuses those.

    A small tmpfs takes the cgroup2 mount's place: crun (in that pure v1
    view) still makes a directory and a ``cgroup.procs`` file per container
    under ``/sys/fs/cgroup/unified`` and never removes them; on the host's
    tmpfs those would pile up, hidden under the real cgroup2 mount.  A page
    each: 256 MiB is room for some 30 000 containers."""
    if os.environ.get("BENCH_PRIVATE"):
        return
    os.environ["BENCH_PRIVATE"] = "1"
    # cgroup mounts outside /sys/fs/cgroup (a test's container rootfs left
    # mounted by another process) would be taken for the host's hierarchies.
    fix = ("findmnt -rn -t cgroup,cgroup2 -o TARGET | grep -v '^/sys/fs/cgroup' | sort -r "
           "| xargs -r -n1 umount -l")
    if os.path.ismount("/sys/fs/cgroup/unified"):
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            if f.read().strip():
                fix += (" && umount /sys/fs/cgroup/unified && "
                       "mount -t tmpfs -o size=256m,mode=755 tmpfs /sys/fs/cgroup/unified")
                os.environ["BENCH_CGFIX"] = "1"
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", "sh", "-c",
                          f'{fix} && exec "$0" "$@"', sys.executable, *sys.argv])


def ensure_tools(packages: Dict[str, str]) -> None:
    """Install with apt-get the Debian ``packages`` (tool -> package) missing, and busybox."""
    missing = [pkg for tool, pkg in packages.items() if shutil.which(tool) is None]
    if not any(os.access(p, os.X_OK) for p in ("/bin/busybox", "/usr/bin/busybox")):
        missing.append("busybox-static")
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


@contextlib.contextmanager
def runtime_work(script: str, binary: pathlib.Path, packages: Dict[str, str],
                 prefix: str) -> Iterator[pathlib.Path]:
    """What a benchmark of container runtimes' binaries starts with: root,
    ``binary`` built, a private mount namespace (:func:`private_mounts`), the
    Debian ``packages`` installed, this process a subreaper (the inits and
    shim daemons a runtime's CLI orphans come to us, to be reaped), and a
    work directory ``prefix*`` any user can walk into, removed after."""
    if os.geteuid() != 0:
        sys.exit(f"{script} needs root")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is missing: run scripts/bootstrap.sh first")
    private_mounts()
    ensure_tools(packages)
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    work = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
