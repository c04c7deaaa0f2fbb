"""A cProfile of pidsafe container cycles, saved as text: where the time goes.

    .venv/bin/python benchmarks/profile_container.py [--cycles N] [--top N] [--out FILE]

Root only.  The bundle and the view of the machine are bench_container.py's
(runc spec + a user namespace, an idmapped busybox rootfs, state on a
tmpfs, the pure cgroup v1 view): ``--cycles`` (default 20) containers of
``/bin/true``, each ``Container.create`` / ``start`` / ``wait`` /
``delete`` in this process, under one ``cProfile`` run (two cycles
before it warm up).  The file (default
``benchmarks/profiles/container-cycle.txt``) starts with the command, the
commit and the load, then the top ``--top`` functions by cumulative time
and by own time.  The profiler's own overhead inflates every Python call;
compare profiles with each other, and the benchmark for real times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pathlib
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import ensure_tools, machine, private_mounts  # noqa: E402
from bench_container import Bench  # noqa: E402

import pidsafe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", default=str(HERE / "profiles" / "container-cycle.txt"))
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile_container.py needs root")
    command = " ".join([".venv/bin/python", "benchmarks/profile_container.py", *sys.argv[1:]])
    private_mounts()
    ensure_tools({"runc": "runc"})   # `runc spec` writes the bundle's config.json
    start = machine()
    work = pathlib.Path(tempfile.mkdtemp(prefix="pidsafe-profile-container-"))
    os.chmod(work, 0o755)
    profile = cProfile.Profile()
    try:
        bench = Bench(work, opts)
        try:
            bench.pidsafe_cycle(2)
            t0 = time.perf_counter()
            profile.enable()
            bench.pidsafe_cycle(opts.cycles)
            profile.disable()
            wall = time.perf_counter() - t0
        finally:
            bench.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    end = machine()
    out = io.StringIO()
    out.write(f"# {command}\n")
    out.write(f"# pidsafe {pidsafe.__version__} at commit {commit}; {opts.cycles} container "
              f"cycles (create+start+wait+delete of /bin/true) under cProfile\n")
    out.write(f"# kernel {end['kernel']}, {end['cpus']} CPUs, Python {end['python']}; load "
              f"average {start['loadavg'][0]:.2f} at start, {end['loadavg'][0]:.2f} at end\n")
    out.write(f"# wall time under the profiler: {wall * 1000:.0f} ms, "
              f"{wall * 1000 / opts.cycles:.1f} ms per cycle\n")
    for key, title in (("cumulative", "by cumulative time"), ("tottime", "by own time")):
        out.write(f"\n## top {opts.top} {title}\n\n")
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats(key).print_stats(opts.top)
    text = out.getvalue().replace(str(HERE.parent) + "/", "")
    pathlib.Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(opts.out).write_text(text)
    print(f"wrote {opts.out} ({wall * 1000 / opts.cycles:.1f} ms per cycle under the profiler)")


if __name__ == "__main__":
    main()
