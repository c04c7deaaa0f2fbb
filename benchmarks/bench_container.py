"""pidsafe.Container in-process against crun, runc, bwrap and a C floor, in one run.

    .venv/bin/python benchmarks/bench_container.py [--rounds N] [--batch N]
        [--heap-mib N] [--settle S] [--json FILE]

Root only.  One bundle, the same ``config.json`` file for every side: what
``runc spec`` writes (run here, Debian's runc), with ``/bin/true`` as the
program, no terminal, and a user namespace mapping 0 -> 100000 (65536 ids)
added to runc's pid, network, ipc, uts and mount namespaces.  Everything
else is runc's: all seven default mounts (proc, /dev, devpts, /dev/shm,
mqueue, sysfs, cgroup), the read-only root, the masked and read-only
paths, the capabilities, the rlimit, ``devices`` deny-all.  The image is
Debian's static busybox (built here); the rootfs is an idmapped bind of it
(``0:100000:65536``) made for each container and undone after it: by
pidsafe itself (``rootfs_mounts`` with ``uidmap=``/``gidmap=``, as a shim
passes containerd's mounts), and for the runtimes by the C loop that drives
them, as containerd's shim mounts the rootfs before it calls the runtime.

Methods (each timed per container, in interleaved rounds):

- ``pidsafe``: ``Container.create`` / ``start`` / ``wait`` / ``delete`` in
  this process (state on a tmpfs).
- ``crun`` and ``runc``: the same cycle through the CLI, as a shim does it:
  bind, ``create --pid-file``, ``start``, wait for init's exit (a pidfd),
  ``delete``, unmount; ``crun run`` and ``runc run``: bind, ``run``,
  unmount.  Each runtime has its own ``--root`` on a tmpfs.
- ``C floor``: benchmarks/cref_container.c, the same work with nothing else
  (what it does and leaves out is listed there): ``C floor`` does all the
  config asks and the cgroups pidsafe makes; ``C floor, no cgroup`` the
  same without cgroups; ``C floor, minimal`` only the namespaces, the
  idmapped rootfs, the seven mounts, pivot_root and exec.
- ``pidsafe exec`` / ``crun exec``: ``/bin/true`` run in a running
  container (``sleep``, the same config otherwise) and waited for.
- ``bwrap``: a bubblewrap sandbox (user, pid, mount namespaces, the image
  bound read-only, /proc and /dev): less than the others do, for scale.
- ``plain spawn``: ``pidsafe.spawn(["/bin/true"])`` + wait, the floor of
  any process.
- controls, ``crun run`` on a bundle whose rootfs stays bound: from the C
  loop, from a Python ``subprocess.run`` loop (what this benchmark used to
  do) and from a bash ``for`` loop (what people type), to show what the way
  of calling a runtime changes.

Each external program is timed in a tight C loop of its own
(benchmarks/.build/cref_container, built here), which reports each
container's times: no Python or shell between two of them.  Methods run
in rounds, at an empty heap and with ``--heap-mib`` MiB touched in this
process, in a fresh random order each round, ``--batch`` containers each,
with ``--settle`` seconds of quiet before each batch (the kernel tears
namespaces and cgroups down after the fact, in workers: a pause keeps one
method's teardown out of the next one's times) and ``--heap-settle``
seconds after touching the heap.  The runtimes run in other processes, so
their big-heap/empty ratio is what touching the heap does to the machine,
not to the caller: read pidsafe's against it.  Reported: median and
p90 over all containers, per phase where there are phases; a ratio is the
median over rounds of the ratio of two methods' medians in the same round.

Who does what with cgroups (strace, this machine's cgroup v1): pidsafe
makes ``/pidsafe/<tag>-<id>`` in the 6 hierarchies it manages (pids,
freezer, devices, memory, cpuacct, cpu) and writes the device rules, and
init joins each itself before its exec (``0`` written to ``tasks``: no
global lock, where a pid written to ``cgroup.procs`` waits for an RCU grace
period); crun and runc make ``/<id>`` in all 9 v1 hierarchies and write
init's pid to each ``cgroup.procs``; ``C floor`` does what pidsafe does.  For
the ``cgroup`` mount in a user namespace, runc and crun bind every v1
hierarchy under a tmpfs; pidsafe and the floor mount the tmpfs only.

crun 1.8 refuses this machine's hybrid cgroups, so the benchmark re-runs itself in a private mount namespace with
``/sys/fs/cgroup/unified`` unmounted; every method runs in that view.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _harness import (add_json_arg, checks_json, compile_cref_exe, ensure_tools,  # noqa: E402
                      machine, p90, print_checks, private_mounts, touch_heap, write_json)
from bundles import build_busybox_rootfs  # noqa: E402  (the tests' own image)

import pidsafe  # noqa: E402

#: Must match MAP in cref_container.c.
MAP = "0:100000:65536"
OCI_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
PACKAGES = {"crun": "crun", "runc": "runc", "bwrap": "bubblewrap"}
PHASES = ("create", "start", "wait", "delete")
#: The cgroup v1 hierarchies pidsafe manages (its strace); the floor uses them too.
PIDSAFE_HIERARCHIES = ("pids", "freezer", "devices", "memory", "cpuacct", "cpu")
FLOOR_CGROUP, FLOOR_CONFIG = 1, 2

#: One container's times in ns: the four phases, or one total.
Sample = Tuple[int, ...]


class Method:
    """One way of running containers: ``run(n)`` runs n, returns their times."""

    def __init__(self, name: str, phased: bool, run: Callable[[int], List[Sample]],
                 note: str = "") -> None:
        self.name, self.phased, self.run, self.note = name, phased, run, note


def runc_spec_bundle(bundle: pathlib.Path, args: Sequence[str]) -> Dict[str, Any]:
    """``runc spec`` in ``bundle``, edited: ``args``, no terminal, a user namespace."""
    bundle.mkdir()
    (bundle / "rootfs").mkdir(mode=0o755)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    doc: Dict[str, Any] = json.loads((bundle / "config.json").read_text())
    doc["process"]["terminal"] = False
    doc["process"]["args"] = list(args)
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["uidMappings"] = OCI_MAP
    doc["linux"]["gidMappings"] = OCI_MAP
    (bundle / "config.json").write_text(json.dumps(doc, indent="\t") + "\n")
    return doc


class Bench:
    """The bundles, state directories and methods of one run."""

    def __init__(self, work: pathlib.Path, opts: argparse.Namespace) -> None:
        self.work, self.opts = work, opts
        self.count = 0
        busybox = next(p for p in ("/bin/busybox", "/usr/bin/busybox") if os.access(p, os.X_OK))
        self.layer = build_busybox_rootfs(work / "layer", busybox)
        self.bundle = work / "bundle"
        self.config = runc_spec_bundle(self.bundle, ["/bin/true"])
        self.rootfs = self.bundle / "rootfs"
        # State lives on tmpfs, as under /run on a real host, for every side.
        self.state = work / "state"
        self.roots = work / "roots"
        self.mounted: List[str] = []
        for d in (self.state, self.roots):
            d.mkdir()
            self._mount_tmpfs(d)
        for tool in ("crun", "runc"):
            (self.roots / tool).mkdir()
        self.runner_path = compile_cref_exe("cref_container")
        self.rootfs_mounts = [pidsafe.Mount("bind", str(self.layer), "", (
            "rbind", f"uidmap={MAP}", f"gidmap={MAP}"))]
        self.keeper: Optional[pidsafe.Container] = None
        self.crun_keeper: Optional[Tuple[int, int]] = None   # (pid, pidfd)
        self.crun_id = "keeper"

    def _mount_tmpfs(self, d: pathlib.Path) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(d)], check=True)
        self.mounted.append(str(d))

    def _bind(self, target: pathlib.Path) -> None:
        with pidsafe.get_userns_fd(MAP, MAP) as userns:
            pidsafe.idmapped_bind(str(self.layer), str(target), userns)
        self.mounted.append(str(target))

    def _id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{os.getpid()}-{self.count}"

    # -- pidsafe, in this process ---------------------------------------------------

    def pidsafe_cycle(self, n: int) -> List[Sample]:
        clock = time.perf_counter_ns
        out: List[Sample] = []
        for _ in range(n):
            t0 = clock()
            c = pidsafe.Container.create(self._id("p"), self.bundle, state_dir=str(self.state),
                                         rootfs_mounts=self.rootfs_mounts)
            t1 = clock()
            c.start()
            t2 = clock()
            code = c.wait()
            t3 = clock()
            c.delete()
            t4 = clock()
            if code != 0:
                raise SystemExit(f"pidsafe container exited {code}")
            out.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        return out

    def pidsafe_exec(self, n: int) -> List[Sample]:
        assert self.keeper is not None
        clock = time.perf_counter_ns
        out: List[Sample] = []
        for _ in range(n):
            t0 = clock()
            with self.keeper.exec(["/bin/true"], exec_id=self._id("e")) as p:
                code = p.wait()
            out.append((clock() - t0,))
            if code != 0:
                raise SystemExit(f"pidsafe exec exited {code}")
        return out

    def plain_spawn(self, n: int) -> List[Sample]:
        clock = time.perf_counter_ns
        out: List[Sample] = []
        for _ in range(n):
            t0 = clock()
            with pidsafe.spawn(["/bin/true"]) as p:
                p.wait()
            out.append((clock() - t0,))
        return out

    # -- the C loop ---------------------------------------------------------------

    def runner(self, *args: str) -> Callable[[int], List[Sample]]:
        def run(n: int) -> List[Sample]:
            r = subprocess.run([self.runner_path, args[0], str(n), *args[1:]], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, check=True, timeout=600)
            rows = [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines()]
            if len(rows) != n:
                raise SystemExit(f"cref_container {args[0]}: {len(rows)} results for {n}")
            return rows
        return run

    def floor(self, flags: int) -> Callable[[int], List[Sample]]:
        cg = [f"/sys/fs/cgroup/{h}" for h in PIDSAFE_HIERARCHIES
              if os.path.ismount(f"/sys/fs/cgroup/{h}")] if flags & FLOOR_CGROUP else []
        return self.runner("floor", str(flags), str(self.layer), str(self.rootfs), *cg)

    def tool_cycle(self, tool: str) -> Callable[[int], List[Sample]]:
        def run(n: int) -> List[Sample]:
            return self.runner("cycle", tool, str(self.roots / tool), str(self.bundle),
                               str(self.layer), self._id(f"{tool[0]}c"))(n)
        return run

    def tool_run(self, tool: str) -> Callable[[int], List[Sample]]:
        def run(n: int) -> List[Sample]:
            return self.runner("argv", str(self.rootfs), str(self.layer),
                               self._id(f"{tool[0]}r"), tool, "--root", str(self.roots / tool),
                               "run", "--bundle", str(self.bundle), "@ID")(n)
        return run

    def bwrap(self, n: int) -> List[Sample]:
        return self.runner("argv", "-", str(self.layer), "bw", "bwrap", "--unshare-user",
                           "--unshare-pid", "--ro-bind", str(self.layer), "/", "--proc", "/proc",
                           "--dev", "/dev", "/bin/true")(n)

    # -- exec into running containers -----------------------------------------------

    def sleeper_bundle(self, name: str) -> pathlib.Path:
        b = self.work / name
        runc_spec_bundle(b, ["/bin/sleep", "1000000"])
        return b

    def start_keepers(self) -> None:
        b = self.sleeper_bundle("sleep-pidsafe")
        self.keeper = pidsafe.Container.create("keeper", b, state_dir=str(self.state),
                                               rootfs_mounts=self.rootfs_mounts)
        self.keeper.start()
        # crun puts a container without linux.cgroupsPath in /<id> of every
        # hierarchy: an id of this run's own, so that another run's
        # `crun kill`/`delete -f` of its keeper cannot reach ours.
        self.crun_id = f"keeper-{os.getpid()}"
        cb = self.sleeper_bundle("sleep-crun")
        self._bind(cb / "rootfs")
        root = str(self.roots / "crun")
        pidfile = str(self.roots / "keeper.pid")
        # Its output to a file: the sleeping program keeps crun's stdio open.
        with open(self.work / "keeper.log", "wb") as log:
            subprocess.run(["crun", "--root", root, "create", "--bundle", str(cb), "--pid-file",
                            pidfile, self.crun_id], check=True, stdin=subprocess.DEVNULL,
                           stdout=log, stderr=log)
        pid = int(pathlib.Path(pidfile).read_text())
        self.crun_keeper = (pid, os.pidfd_open(pid))
        subprocess.run(["crun", "--root", root, "start", self.crun_id], check=True)

    def crun_exec(self, n: int) -> List[Sample]:
        return self.runner("argv", "-", str(self.layer), "x", "crun", "--root",
                           str(self.roots / "crun"), "exec", self.crun_id, "/bin/true")(n)

    def stop_keepers(self) -> None:
        if self.keeper is not None:
            self.keeper.delete(force=True)
            self.keeper = None
        if self.crun_keeper is not None:
            pid, pidfd = self.crun_keeper
            root = str(self.roots / "crun")
            subprocess.run(["crun", "--root", root, "kill", self.crun_id, "KILL"], check=False)
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED)   # ours: we are its subreaper
            os.close(pidfd)
            subprocess.run(["crun", "--root", root, "delete", "-f", self.crun_id], check=False)
            self.crun_keeper = None

    # -- controls: one runtime, three ways of calling it --------------------------------

    def controls(self) -> Dict[str, Method]:
        b = self.work / "bound"
        b.mkdir()
        (b / "rootfs").mkdir(mode=0o755)
        shutil.copy(self.bundle / "config.json", b / "config.json")
        self._bind(b / "rootfs")
        root = str(self.roots / "crun")

        def argv(cid: str) -> List[str]:
            return ["crun", "--root", root, "run", "--bundle", str(b), cid]

        def py(n: int) -> List[Sample]:
            out: List[Sample] = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                subprocess.run(argv(self._id("py")), check=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                out.append((time.perf_counter_ns() - t0,))
            return out

        def bash(n: int) -> List[Sample]:
            prefix = self._id("sh")
            script = (f'for i in $(seq {n}); do s=$(date +%s%N); '
                      f'{" ".join(argv(prefix + "-$i"))} </dev/null >/dev/null 2>&1 || exit 1; '
                      f'echo $(( $(date +%s%N) - s )); done')
            r = subprocess.run(["bash", "-c", script], check=True, stdout=subprocess.PIPE)
            rows: List[Sample] = [(int(x),) for x in r.stdout.split()]
            return rows

        def c(n: int) -> List[Sample]:
            return self.runner("argv", "-", str(self.layer), self._id("c"), *argv("@ID"))(n)

        note = "rootfs bound once, not per container"
        return {
            "control: crun run, C loop": Method("control: crun run, C loop", False, c, note),
            "control: crun run, Python loop": Method("control: crun run, Python loop", False,
                                                     py, note),
            "control: crun run, bash loop": Method("control: crun run, bash loop", False, bash,
                                                   note),
        }

    def methods(self) -> Dict[str, Method]:
        ms = [
            Method("pidsafe", True, self.pidsafe_cycle),
            Method("C floor", True, self.floor(FLOOR_CGROUP | FLOOR_CONFIG)),
            Method("C floor, no cgroup", True, self.floor(FLOOR_CONFIG)),
            Method("C floor, minimal", True, self.floor(0)),
            Method("crun", True, self.tool_cycle("crun")),
            Method("runc", True, self.tool_cycle("runc")),
            Method("crun run", False, self.tool_run("crun")),
            Method("runc run", False, self.tool_run("runc")),
            Method("pidsafe exec", False, self.pidsafe_exec),
            Method("crun exec", False, self.crun_exec),
            Method("bwrap", False, self.bwrap),
            Method("plain spawn", False, self.plain_spawn),
        ]
        out = {m.name: m for m in ms}
        out.update(self.controls())
        return out

    def close(self) -> None:
        try:
            self.stop_keepers()
        finally:
            for d in reversed(self.mounted):
                subprocess.run(["umount", d], check=False)


# -- running and reporting ------------------------------------------------------------

#: runs[(method, heap)] = one list of samples per round
Runs = Dict[Tuple[str, str], List[List[Sample]]]


def run_rounds(methods: Dict[str, Method], opts: argparse.Namespace) -> Tuple[Runs, List[str]]:
    heaps = ["empty"] + ([f"{opts.heap_mib} MiB"] if opts.heap_mib else [])
    for m in methods.values():   # warm-up: page cache, first-run set-up
        m.run(1)
    runs: Runs = {}
    gc.disable()
    try:
        for rnd in range(opts.rounds):
            for heap in heaps:
                mem = touch_heap(opts.heap_mib) if heap != "empty" else None
                if mem is not None:
                    time.sleep(opts.heap_settle)   # what touching 1 GiB set off in the kernel
                order = list(methods)
                random.shuffle(order)
                for name in order:
                    time.sleep(opts.settle)
                    runs.setdefault((name, heap), []).append(methods[name].run(opts.batch))
                del mem
            print(f"round {rnd + 1}/{opts.rounds} done, load {os.getloadavg()[0]:.2f}",
                  file=sys.stderr)
    finally:
        gc.enable()
    return runs, heaps


def totals(rounds: List[List[Sample]]) -> List[float]:
    return [sum(s) / 1e6 for r in rounds for s in r]


def phase(rounds: List[List[Sample]], i: int) -> List[float]:
    return [s[i] / 1e6 for r in rounds for s in r]


def ratio(runs: Runs, a: str, b: str, heap_a: str, heap_b: Optional[str] = None) -> float:
    """Median over rounds of median(a) / median(b), both measured in that round."""
    ra, rb = runs[(a, heap_a)], runs[(b, heap_b or heap_a)]
    return statistics.median(statistics.median(sum(s) for s in x)
                             / statistics.median(sum(s) for s in y) for x, y in zip(ra, rb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5, help="containers per method per round")
    ap.add_argument("--heap-mib", type=int, default=1024, help="0: the empty heap only")
    ap.add_argument("--settle", type=float, default=0.1,
                    help="seconds of quiet before each batch")
    ap.add_argument("--heap-settle", type=float, default=1.0,
                    help="seconds of quiet after touching the heap")
    add_json_arg(ap)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_container.py needs root")
    private_mounts()
    ensure_tools(PACKAGES)
    # Orphaned container inits (crun's keeper, when its CLI exits) come to us.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    start = machine()
    work = pathlib.Path(tempfile.mkdtemp(prefix="pidsafe-bench-container-"))
    os.chmod(work, 0o755)   # the mapped root reaches the rootfs through it
    try:
        bench = Bench(work, opts)
        try:
            bench.start_keepers()
            methods = bench.methods()
            runs, heaps = run_rounds(methods, opts)
        finally:
            bench.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(methods, runs, heaps, opts, start, bench.config)


def version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def report(methods: Dict[str, Method], runs: Runs, heaps: List[str], opts: argparse.Namespace,
           start: Dict[str, Any], config: Dict[str, Any]) -> None:
    empty = heaps[0]
    big = heaps[1] if len(heaps) > 1 else None
    end = machine()
    print(f"\npidsafe {pidsafe.__version__} container benchmark: busybox /bin/true, runc spec "
          f"+ user namespace, idmapped rootfs; {opts.rounds} rounds x {opts.batch} containers, "
          f"settle {opts.settle} s (after the heap: {opts.heap_settle} s)")
    print(f"kernel {end['kernel']}, {end['cpus']} CPUs, load average {start['loadavg'][0]:.2f} "
          f"at start, {end['loadavg'][0]:.2f} at end; cgroup v1 view: "
          f"{'yes' if os.environ.get('BENCH_CGFIX') else 'no'}; "
          f"{version('crun')}, {version('runc')}, {version('bwrap')}")
    print("times in ms: median (p90) over all containers; ratio: median over rounds of the "
          "per-round ratio of medians")
    print()
    head = f"{'method':<32}{'empty heap':>18}"
    if big:
        head += f"{big + ' heap':>20}{'big/empty':>11}"
    head += f"{'vs crun':>9}{'vs C floor':>12}"
    print(head)
    print("-" * len(head))
    summary: Dict[str, Any] = {}
    for name, m in methods.items():
        xs = totals(runs[(name, empty)])
        cell = f"{statistics.median(xs):7.2f} ({p90(xs):6.2f})"
        row = f"{name:<32}{cell:>18}"
        s: Dict[str, Any] = {"phased": m.phased, "note": m.note, "heaps": {}}
        for heap in heaps:
            t = totals(runs[(name, heap)])
            h: Dict[str, Any] = {"median_ms": statistics.median(t), "p90_ms": p90(t),
                                 "n": len(t),
                                 "rounds_ns": [[list(x) for x in r] for r in runs[(name, heap)]]}
            if m.phased:
                h["phases"] = {p: {"median_ms": statistics.median(phase(runs[(name, heap)], i)),
                                   "p90_ms": p90(phase(runs[(name, heap)], i))}
                               for i, p in enumerate(PHASES)}
            h["vs_crun"] = ratio(runs, name, "crun", heap)
            h["vs_c_floor"] = ratio(runs, name, "C floor", heap)
            s["heaps"][heap] = h
        if big:
            b = totals(runs[(name, big)])
            cell = f"{statistics.median(b):7.2f} ({p90(b):6.2f})"
            s["big_vs_empty"] = ratio(runs, name, name, big, empty)
            row += f"{cell:>20}{s['big_vs_empty']:>10.2f}x"
        row += f"{s['heaps'][empty]['vs_crun']:>8.2f}x{s['heaps'][empty]['vs_c_floor']:>11.2f}x"
        print(row + (f"   [{m.note}]" if m.note else ""))
        summary[name] = s
    for heap in heaps:
        print(f"\nper phase, {heap} heap: median (p90) in ms")
        print(f"{'method':<22}" + "".join(f"{p:>18}" for p in PHASES) + f"{'cycle':>18}")
        for name, m in methods.items():
            if not m.phased:
                continue
            r = runs[(name, heap)]
            cells = [f"{statistics.median(phase(r, i)):7.2f} ({p90(phase(r, i)):6.2f})"
                     for i in range(len(PHASES))]
            t = totals(r)
            cells.append(f"{statistics.median(t):7.2f} ({p90(t):6.2f})")
            print(f"{name:<22}" + "".join(f"{c:>18}" for c in cells))
    checks = [
        ("pidsafe cycle / crun cycle (empty heap)", ratio(runs, "pidsafe", "crun", empty), 0.5,
         "x"),
        ("pidsafe cycle / crun run (empty heap)", ratio(runs, "pidsafe", "crun run", empty), 0.5,
         "x"),
        ("pidsafe exec / crun exec (empty heap)", ratio(runs, "pidsafe exec", "crun exec", empty),
         0.25, "x"),
    ]
    if big:
        checks.append((f"pidsafe cycle {big} heap / empty heap",
                       ratio(runs, "pidsafe", "pidsafe", big, empty), 1.1, "x"))
    print()
    print_checks(checks)
    print(f"\n{'(no target)':<56}")
    for what, num, den in (("pidsafe cycle / C floor", "pidsafe", "C floor"),
                           ("pidsafe cycle / C floor, no cgroup", "pidsafe",
                            "C floor, no cgroup"),
                           ("pidsafe cycle / C floor, minimal", "pidsafe", "C floor, minimal"),
                           ("crun cycle / C floor", "crun", "C floor"),
                           ("pidsafe cycle / runc cycle", "pidsafe", "runc")):
        print(f"{what:<56}{ratio(runs, num, den, empty):>8.2f}x")
    if big:
        print(f"{'crun cycle ' + big + ' heap / empty heap (the machine, not the caller)':<56}"
              f"{ratio(runs, 'crun', 'crun', big, empty):>8.2f}x")
    write_json(opts.json, {
        "title": "container cycle", "machine_start": start, "rounds": opts.rounds,
        "batch": opts.batch, "settle": opts.settle, "heap_settle": opts.heap_settle,
        "heaps": heaps, "phases": list(PHASES),
        "versions": {t: version(t) for t in ("crun", "runc", "bwrap")},
        "pidsafe": pidsafe.__version__, "config": config, "methods": summary,
        "checks": checks_json(checks),
    })


if __name__ == "__main__":
    main()
