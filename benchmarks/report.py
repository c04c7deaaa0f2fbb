"""Run every benchmark, then write benchmarks/report/README.md with tables and charts.

    .venv/bin/python benchmarks/report.py [--quick] [--only NAME ...] [--out DIR]

One command: each benchmark (spawn, spawn into user namespaces, user
namespaces, idmapped mounts, the reaper, containers, the runtime CLI, pods
through containerd's CRI, and the shim's when ``benchmarks/bench_shim.py``
exists) runs in turn with
``--json``, its printed output kept in ``DIR/raw/NAME.txt`` (stderr: ``NAME.err.txt``) and its
numbers in ``DIR/raw/NAME.json``; then ``DIR/README.md`` gets a table per benchmark
and PNG charts (``DIR/*.png``): pidsafe against the C floors,
``subprocess``, crun, runc and bwrap, and cost against the caller's heap
size (``bench_spawn`` is run at three heap sizes for that).  The load
average before and after each benchmark is in the report: other work on
the machine shows there.

Root runs them all; as another user the root-only ones are skipped and
the report says so.  Charts need matplotlib, which is installed into this
interpreter's environment (the venv) with pip when missing; it is not a
dependency of pidsafe.  ``--quick`` runs each benchmark briefly (a smoke
test of the report, not results); ``--only`` runs some and keeps the
others' last results from ``DIR/raw``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class Bench:
    """One benchmark run: its script, arguments (full and quick), root or not."""

    def __init__(self, name: str, script: str, args: Sequence[str], quick: Sequence[str],
                 root: bool, title: str) -> None:
        self.name, self.script, self.args, self.quick = name, script, list(args), list(quick)
        self.root, self.title = root, title


BENCHES = [
    Bench("spawn", "bench_spawn.py", [], ["--rounds", "2", "--batch", "5"], False,
          "spawn + wait of /bin/true"),
    Bench("spawn-256", "bench_spawn.py", ["--heap-mib", "256", "--rounds", "7"],
          ["--rounds", "1", "--batch", "3", "--heap-mib", "256"], False,
          "spawn + wait, 256 MiB heap (for the heap chart)"),
    Bench("spawn-4096", "bench_spawn.py", ["--heap-mib", "4096", "--rounds", "7"],
          ["--rounds", "1", "--batch", "3", "--heap-mib", "4096"], False,
          "spawn + wait, 4 GiB heap (for the heap chart)"),
    Bench("spawn-userns", "bench_spawn_userns.py", [], ["--rounds", "2", "--batch", "5"], True,
          "spawn into user namespaces"),
    Bench("userns", "bench_userns.py", [],
          ["--rounds", "2", "--batch", "10", "--hit-batch", "100", "--fork-big-batch", "2"], True,
          "a user namespace as an fd"),
    Bench("mount", "bench_mount.py", [], ["--rounds", "2", "--batch", "20"], True,
          "an idmapped bind mount"),
    Bench("reaper", "bench_reaper.py", [],
          ["--spawns", "50", "--rounds", "1", "--latency-spawns", "50", "--exits", "2000"], False,
          "the reaper"),
    Bench("container", "bench_container.py", [], ["--rounds", "2", "--batch", "2"], True,
          "container cycle"),
    Bench("runtime-cli", "bench_runtime_cli.py", [], ["--rounds", "1", "--batch", "1"], True,
          "the runtime CLI"),
    Bench("cri", "bench_cri.py", [], ["--rounds", "2", "--rss-pods", "1"], True,
          "pods through containerd's CRI"),
]
SHIM = Bench("shim", "bench_shim.py", [], ["--runs", "2", "--rss", "2"], True, "the shim")


def ensure_matplotlib() -> Any:
    """matplotlib (Agg), installed into this environment with pip if missing."""
    try:
        import matplotlib
    except ImportError:
        print("report: installing matplotlib into this environment (pip)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def git_commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def run_bench(b: Bench, raw: pathlib.Path, quick: bool) -> Dict[str, Any]:
    """Run one benchmark; what happened (and its JSON, if it wrote one)."""
    args = b.quick if quick else b.args
    cmd = [".venv/bin/python", f"benchmarks/{b.script}", *args]
    out = raw / f"{b.name}.txt"
    js = raw / f"{b.name}.json"
    js.unlink(missing_ok=True)
    if b.root and os.geteuid() != 0:
        return {"name": b.name, "command": " ".join(cmd), "skipped": "needs root"}
    print(f"report: {' '.join(cmd)}", file=sys.stderr)
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    with open(out, "w") as f, open(raw / f"{b.name}.err.txt", "w+") as err:
        r = subprocess.run([sys.executable, str(HERE / b.script), *args, "--json", str(js)],
                           cwd=ROOT, stdout=f, stderr=err, text=True)
        err.seek(0)
        stderr = err.read()
    info: Dict[str, Any] = {"name": b.name, "command": " ".join(cmd), "rc": r.returncode,
                            "seconds": time.monotonic() - t0, "load_before": load0,
                            "load_after": os.getloadavg()[0]}
    if r.returncode != 0:
        info["error"] = stderr.strip().splitlines()[-3:]
        print(f"report: {b.name} failed ({r.returncode}); its stderr is in "
              f"{raw / (b.name + '.err.txt')}", file=sys.stderr)
    (raw / f"{b.name}.run.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def load(raw: pathlib.Path, name: str) -> Tuple[Optional[Dict[str, Any]], Dict[str, Any]]:
    """A benchmark's JSON (None if it wrote none) and how it ran."""
    js, run = raw / f"{name}.json", raw / f"{name}.run.json"
    info = json.loads(run.read_text()) if run.exists() else {"name": name, "skipped": "not run"}
    return (json.loads(js.read_text()) if js.exists() else None), info


# -- tables -------------------------------------------------------------------------------

def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def x(v: float) -> str:
    return f"{v:.2f}x"


def heap_table(d: Dict[str, Any], unit: str = "us") -> str:
    res = d["results"]
    small, big = res["heaps"]
    ref = res["ref"]
    rows = []
    for name, m in res["methods"].items():
        rows.append([name, f"{m[small]['median_us']:.1f}", f"{m[big]['median_us']:.1f}",
                     x(m["big_vs_empty"]), x(m[small].get("vs_ref", float("nan"))),
                     x(m[big].get("vs_ref", float("nan")))])
    return md_table(["method", f"{small} heap (us)", f"{big} heap (us)", f"{big} / empty",
                     f"vs {ref}, empty", f"vs {ref}, {big}"], rows)


def checks_table(d: Dict[str, Any]) -> str:
    rows = []
    for c in d.get("checks", []):
        if "value" in c:
            rows.append([c["target"], f"{c['value']:.2f}{c['unit']}", f"{c['limit']:.2f}{c['unit']}",
                         "ok" if c["ok"] else "**missed**"])
        else:
            rows.append([c["target"], "", "", "ok" if c["ok"] else "**missed**"])
    return md_table(["target", "value", "limit", "verdict"], rows) if rows else ""


def container_tables(d: Dict[str, Any]) -> str:
    heaps = d["heaps"]
    empty = heaps[0]
    big = heaps[1] if len(heaps) > 1 else None
    rows = []
    for name, m in d["methods"].items():
        h = m["heaps"][empty]
        row = [name + (f" ({m['note']})" if m["note"] else ""),
               f"{h['median_ms']:.2f} ({h['p90_ms']:.2f})"]
        if big:
            hb = m["heaps"][big]
            row += [f"{hb['median_ms']:.2f} ({hb['p90_ms']:.2f})", x(m["big_vs_empty"])]
        row += [x(h["vs_crun"]), x(h["vs_c_floor"])]
        rows.append(row)
    head = ["method", "empty heap, ms: median (p90)"]
    if big:
        head += [f"{big} heap", f"{big} / empty"]
    head += ["vs crun cycle", "vs C floor"]
    out = md_table(head, rows)
    for heap in heaps:
        prow = []
        for name, m in d["methods"].items():
            if not m["phased"]:
                continue
            ph = m["heaps"][heap]["phases"]
            prow.append([name] + [f"{ph[p]['median_ms']:.2f} ({ph[p]['p90_ms']:.2f})"
                                  for p in d["phases"]]
                        + [f"{m['heaps'][heap]['median_ms']:.2f}"])
        out += f"\nPer phase, {heap} heap, ms: median (p90)\n\n"
        out += md_table(["method", *d["phases"], "cycle"], prow)
    return out


def mount_table(d: Dict[str, Any]) -> str:
    rows = [[n, f"{m['bind_us']:.1f}", f"{m['bind_umount_us']:.1f}", x(m["bind_vs_ref"]),
             x(m["bind_umount_vs_ref"])] for n, m in d["methods"].items()]
    return md_table(["method", "bind (us)", "bind + umount (us)", "bind vs C",
                     "bind + umount vs C"], rows)


def reaper_tables(d: Dict[str, Any]) -> str:
    rows = [[n, f"{t['1']['per_s']:.0f}/s ({x(t['1']['vs_plain'])})",
             f"{t['16']['per_s']:.0f}/s ({x(t['16']['vs_plain'])})"]
            for n, t in d["throughput"].items()]
    out = md_table(["throughput", "1 thread", "16 threads"], rows)
    rows = [[n, f"{v['p50_ms']:.3f}", f"{v['p99_ms']:.3f}", f"{v['max_ms']:.3f}"]
            for n, v in d["latency"].items()]
    out += "\n" + md_table(["kill -> exit delivered (ms)", "p50", "p99", "max"], rows)
    rows = [[str(m["exits"]), f"{m['rss_mib']:.1f}"] for m in d["memory"]]
    out += "\n" + md_table(["exits", "RSS (MiB)"], rows)
    return out


def cri_table(d: Dict[str, Any]) -> str:
    rows = [[r["handler"], str(r["load"]), str(r["n"]), f"{r['p50_ms']:.1f}",
             f"{r['p99_ms']:.1f}", f"{r['pods_per_s']:.2f}"] for r in d["rows"]]
    out = md_table(["handler", "pods at once", "pods timed", "p50 (ms)", "p99 (ms)",
                    "pods/s"], rows)
    rows = [[h, f"{kib / 1024:.1f}"] for h, kib in d["rss_kib_per_pod"].items()]
    return out + "\n" + md_table(["handler", "shim RSS per pod (MiB)"], rows)


def shim_table(d: Dict[str, Any]) -> str:
    med = d["medians_ms"]
    rows = [[r, f"{m:.1f}", x(m / med["runc"]) if med.get("runc") else ""]
            for r, m in med.items()]
    out = md_table(["runtime", "ctr run --rm, median (ms)", "vs runc shim + runc"], rows)
    rows = [[name, f"{statistics.median(v):.1f}", str(len(v))]
            for name, v in sorted(d.get("phases_ms", {}).items()) if v]
    if rows:
        out += "\n" + md_table(["where the pidsafe shim's time goes", "median (ms)", "n"], rows)
    rows = [[name, f"{kib / 1024:.1f}"] for name, kib in d.get("rss_kib", {}).items()]
    if rows:
        out += "\n" + md_table(["shim daemon", "RSS (MiB)"], rows)
    return out


def cli_table(d: Dict[str, Any]) -> str:
    rows = [[n, f"{m['median_ms']:.2f}", x(m["vs_runc"]), x(m["vs_crun"])]
            for n, m in d["methods"].items()]
    return md_table(["method", "median (ms)", "vs runc", "vs crun"], rows)


# -- charts -------------------------------------------------------------------------------

COLORS = {"pidsafe": "#1f77b4", "C": "#7f7f7f", "crun": "#ff7f0e", "runc": "#d62728",
          "bwrap": "#9467bd", "subprocess": "#2ca02c", "other": "#bcbd22"}
PHASE_COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2"]


def color(name: str) -> str:
    for key in ("pidsafe", "crun", "runc", "bwrap", "subprocess"):
        if key in name:
            return COLORS[key]
    if name.startswith("C ") or "C floor" in name or name.startswith("control"):
        return COLORS["C"]
    return COLORS["other"]


def chart_container(plt: Any, d: Dict[str, Any], path: pathlib.Path) -> None:
    """Stacked phases per container method (empty heap), p90 marked."""
    empty = d["heaps"][0]
    names = [n for n in d["methods"] if not n.startswith("control")]
    names.sort(key=lambda n: d["methods"][n]["heaps"][empty]["median_ms"])
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.6))
    for i, n in enumerate(names):
        m = d["methods"][n]["heaps"][empty]
        if d["methods"][n]["phased"]:
            left = 0.0
            for k, p in enumerate(d["phases"]):
                w = m["phases"][p]["median_ms"]
                ax.barh(i, w, left=left, color=PHASE_COLORS[k],
                        label=p if i == next(j for j, nn in enumerate(names)
                                              if d["methods"][nn]["phased"]) else None)
                left += w
        else:
            ax.barh(i, m["median_ms"], color=color(n), alpha=0.8)
        ax.plot([m["p90_ms"]], [i], marker="|", color="black", markersize=12)
        ax.text(max(m["p90_ms"], m["median_ms"]) * 1.02 + 0.2, i, f"{m['median_ms']:.1f} ms",
                va="center", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=9)
    ax.set_xlabel("ms per container (median; | = p90); phases stacked where there are phases")
    ax.set_title("Container of /bin/true, same config.json (runc spec + userns, idmapped rootfs)",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8, title="phase", title_fontsize=8)
    ax.set_xlim(0, max(d["methods"][n]["heaps"][empty]["p90_ms"] for n in names) * 1.18)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_ratios(plt: Any, rows: List[Tuple[str, float, Optional[float]]], path: pathlib.Path,
                 title: str) -> None:
    """Horizontal bars of pidsafe/peer ratios, a line at 1.0 and the target where given."""
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    for i, (label, v, target) in enumerate(rows):
        ax.barh(i, v, color="#1f77b4" if (target is None or v <= target) else "#d62728")
        ax.text(v * 1.01 + 0.02, i, f"{v:.2f}x" + (f"  (target {target:.2f}x)" if target else ""),
                va="center", fontsize=8)
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize=9)
    ax.set_xlabel("ratio, same run (< 1: pidsafe faster); red: target missed")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(max(r[1] for r in rows), max((r[2] or 0) for r in rows)) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_grouped(plt: Any, names: List[str], series: Dict[str, List[float]], path: pathlib.Path,
                  title: str, ylabel: str, log: bool = False, by_name: bool = False) -> None:
    """Grouped vertical bars: one group per name, one bar per series."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / max(1, len(series))
    for k, (label, vals) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, vals, width, label=label, color=color(label) if by_name else None,
                      hatch="//" if by_name and label.endswith("p99") else None)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.0f}" if v >= 10 else f"{v:.1f}",
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8, rotation=12, ha="right")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_heap(plt: Any, spawn: Dict[int, Dict[str, Any]], others: List[Tuple[str, float]],
               path: pathlib.Path) -> None:
    """Cost at a heap of N MiB relative to an empty heap, per method."""
    fig, ax = plt.subplots(figsize=(9, 4.6))
    heaps = sorted(spawn)
    if heaps:
        names = list(spawn[heaps[0]]["results"]["methods"])
        for n in names:
            ys = [spawn[h]["results"]["methods"][n]["big_vs_empty"] for h in heaps]
            ax.plot(heaps, ys, marker="o", label=f"spawn: {n}", color=color(n)
                    if "fork" not in n else "#8c564b",
                    linestyle="-" if "pidsafe" in n else "--")
    for k, (label, v) in enumerate(others):   # side by side around 1 GiB
        ax.plot([1024 * 2 ** (0.06 * (k - (len(others) - 1) / 2))], [v], marker="s",
                linestyle="none", label=label)
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([256, 1024, 4096])
    ax.set_xticklabels(["256 MiB", "1 GiB", "4 GiB"])
    ax.set_xlabel("memory touched in the calling process")
    ax.set_ylabel("time at that heap / time at an empty heap")
    ax.set_title("Cost against the caller's heap size (same run, per benchmark)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the report ---------------------------------------------------------------------------

def write_report(out: pathlib.Path, plt: Any, infos: Dict[str, Dict[str, Any]],
                 started: str, finished: str, quick: bool) -> None:
    raw = out / "raw"
    data = {b.name: load(raw, b.name)[0] for b in BENCHES + [SHIM]}
    infos = {b.name: load(raw, b.name)[1] for b in BENCHES + [SHIM]}
    found: List[Optional[Dict[str, Any]]] = [
        d.get("machine_end") or d.get("machine") or d.get("machine_start")
        for d in data.values() if d]
    m: Dict[str, Any] = next((f for f in found if f), {})
    md: List[str] = []
    md.append("# pidsafe benchmark report\n")
    md.append(f"Generated by `.venv/bin/python benchmarks/report.py"
              f"{' --quick' if quick else ''}` on {started} (finished {finished}), pidsafe at "
              f"`{git_commit()}`. Kernel {m.get('kernel', '?')}, {m.get('cpus', '?')} CPUs, "
              f"Python {m.get('python', '?')}. Every ratio compares methods measured in the same "
              "run (interleaved rounds, median of per-round ratios); absolute times move with "
              "the machine's load, shown per benchmark below. The printed output of each "
              "benchmark is in [raw/](raw/), with its JSON.\n")
    if quick:
        md.append("**--quick: a smoke test of the report, not results.**\n")
    rows = []
    for b in BENCHES + [SHIM]:
        i = infos[b.name]
        if b is SHIM and i.get("skipped") == "not run":
            continue
        state = (f"skipped: {i['skipped']}" if "skipped" in i else
                 "ok" if i.get("rc") == 0 else f"**failed** (exit {i.get('rc')})")
        load_s = (f"{i['load_before']:.2f} / {i['load_after']:.2f}" if "load_before" in i else "")
        rows.append([b.title, f"`{i.get('command', b.script)}`", state,
                     f"{i.get('seconds', 0):.0f} s" if "seconds" in i else "", load_s])
    md.append("## Runs\n")
    md.append(md_table(["benchmark", "command", "result", "time", "load avg before / after"],
                       rows))

    c = data.get("container")
    if c:
        chart_container(plt, c, out / "container.png")
        e = c["heaps"][0]
        meth = c["methods"]
        ratios: List[Tuple[str, float, Optional[float]]] = [
            ("pidsafe cycle / crun cycle", meth["pidsafe"]["heaps"][e]["vs_crun"], 0.5),
            ("pidsafe cycle / crun run", next(k["value"] for k in c["checks"]
                                               if "crun run" in k["target"]), 0.5),
            ("pidsafe exec / crun exec", next(k["value"] for k in c["checks"]
                                               if "exec" in k["target"]), 0.25),
            ("pidsafe cycle / C floor", meth["pidsafe"]["heaps"][e]["vs_c_floor"], None),
            ("crun cycle / C floor", meth["crun"]["heaps"][e]["vs_c_floor"], None),
        ]
        if len(c["heaps"]) > 1:
            ratios.append((f"pidsafe cycle, {c['heaps'][1]} heap / empty",
                           meth["pidsafe"]["big_vs_empty"], 1.1))
            ratios.append((f"crun cycle, {c['heaps'][1]} heap / empty (machine effect)",
                           meth["crun"]["big_vs_empty"], None))
        chart_ratios(plt, ratios, out / "container-ratios.png",
                     "Containers: pidsafe against crun, its C floor, and its own empty heap")
        md.append("## Containers (`bench_container.py`)\n")
        md.append(f"One `config.json` for every side: `runc spec` (Debian's runc) with "
                  f"`/bin/true`, no terminal, and a user namespace `0:100000:65536` added; "
                  f"the busybox rootfs an idmapped bind made per container; state and runtime "
                  f"roots on tmpfs; crun, runc and bwrap timed by a C loop of their own; "
                  f"{c['rounds']} rounds x {c['batch']} containers per method and heap, "
                  f"{c['settle']} s of quiet before each batch, {c.get('heap_settle', 0)} s after touching "
                  f"the heap. {', '.join(c['versions'].values())}. "
                  "What each side does (cgroups included) is in the benchmark's docstring and "
                  "`cref_container.c`.\n")
        md.append("![container cycle](container.png)\n")
        md.append("![container ratios](container-ratios.png)\n")
        md.append(container_tables(c))
        md.append("\n" + checks_table(c))

    sp = data.get("spawn")
    if sp:
        res = sp["results"]
        small, big = res["heaps"]
        names = list(res["methods"])
        chart_grouped(plt, names, {f"{small} heap": [res["methods"][n][small]["median_us"]
                                                     for n in names],
                                   f"{big} heap": [res["methods"][n][big]["median_us"]
                                                   for n in names]},
                      out / "spawn.png", "spawn + wait of /bin/true (median)", "us per spawn",
                      log=True)
        md.append("## Spawn (`bench_spawn.py`)\n")
        md.append("![spawn](spawn.png)\n")
        md.append(heap_table(sp) + "\n" + checks_table(sp))
    spawns: Dict[int, Dict[str, Any]] = {}
    for h, k in ((256, "spawn-256"), (1024, "spawn"), (4096, "spawn-4096")):
        dk = data.get(k)
        if dk is not None:
            spawns[h] = dk
    others: List[Tuple[str, float]] = []
    for key, label, meth_name in (("spawn-userns", "spawn(uidmap=)", "spawn(uidmap=, gidmap=)"),
                                  ("userns", "get_userns_fd", "pidsafe.get_userns_fd"),
                                  ("userns", "C fork-style userns helper", "C fork-style helper")):
        dd = data.get(key)
        if dd and meth_name in dd["results"]["methods"]:
            others.append((label, dd["results"]["methods"][meth_name]["big_vs_empty"]))
    if c and len(c["heaps"]) > 1:
        others.append(("container cycle: pidsafe", c["methods"]["pidsafe"]["big_vs_empty"]))
        others.append(("container cycle: crun (another process)",
                       c["methods"]["crun"]["big_vs_empty"]))
    if spawns or others:
        chart_heap(plt, spawns, others, out / "heap.png")
        md.append("## Cost against the caller's heap size\n")
        md.append("Each point: the same method's median at that heap over its median at an "
                  "empty heap, in the same run. `os.fork` copies the caller's page tables; "
                  "pidsafe's children share its memory until they exec (`CLONE_VM|CLONE_VFORK`), "
                  "so their cost should stay flat. A method in another process (crun) shows "
                  "what the machine does when a big heap is touched, not the caller.\n")
        md.append("![heap](heap.png)\n")

    for key, title in (("spawn-userns", "Spawn into user namespaces (`bench_spawn_userns.py`)"),
                       ("userns", "User namespaces as fds (`bench_userns.py`)")):
        dd = data.get(key)
        if dd:
            res = dd["results"]
            small, big = res["heaps"]
            names = list(res["methods"])
            chart_grouped(plt, names, {f"{small} heap": [res["methods"][n][small]["median_us"]
                                                         for n in names],
                                       f"{big} heap": [res["methods"][n][big]["median_us"]
                                                       for n in names]},
                          out / f"{key}.png", dd["title"] + " (median)", "us per call",
                          log=True)
            md.append(f"## {title}\n")
            md.append(f"![{key}]({key}.png)\n")
            md.append(heap_table(dd) + "\n" + checks_table(dd))

    mo = data.get("mount")
    if mo:
        names = list(mo["methods"])
        chart_grouped(plt, names, {"bind": [mo["methods"][n]["bind_us"] for n in names],
                                   "bind + umount": [mo["methods"][n]["bind_umount_us"]
                                                     for n in names]},
                      out / "mount.png", mo["title"] + f" on {mo['fs']} (median)", "us")
        md.append("## Idmapped bind mounts (`bench_mount.py`)\n")
        md.append("![mount](mount.png)\n")
        md.append(mount_table(mo) + "\n" + checks_table(mo))

    rp = data.get("reaper")
    if rp:
        lat = rp["latency"]
        names = list(lat)
        chart_grouped(plt, names, {"p50": [lat[n]["p50_ms"] for n in names],
                                   "p99": [lat[n]["p99_ms"] for n in names]},
                      out / "reaper.png", "Reaper: kill through the pidfd -> exit delivered",
                      "ms", log=True)
        md.append("## Reaper (`bench_reaper.py`)\n")
        md.append("![reaper](reaper.png)\n")
        md.append(reaper_tables(rp) + "\n" + checks_table(rp))

    cli = data.get("runtime-cli")
    if cli:
        kinds = cli["kinds"]
        rts = list(dict.fromkeys(v["runtime"] for v in cli["methods"].values()))
        chart_grouped(plt, kinds, {rt: [cli["methods"][f"{rt} {k}"]["median_ms"] for k in kinds]
                                   for rt in rts},
                      out / "runtime-cli.png", "Runtime CLIs: busybox /bin/true (median)", "ms",
                      by_name=True)
        md.append("## Runtime CLI (`bench_runtime_cli.py`)\n")
        md.append(f"containerd part: {cli['ctr']}. Versions: "
                  f"{', '.join(f'{k}: {v}' for k, v in cli['versions'].items())}.\n")
        md.append("![runtime cli](runtime-cli.png)\n")
        md.append(cli_table(cli) + "\n" + checks_table(cli))

    cri = data.get("cri")
    if cri:
        loads = sorted({r["load"] for r in cri["rows"]})
        handlers = list(dict.fromkeys(r["handler"] for r in cri["rows"]))
        series = {}
        for h in handlers:
            for key in ("p50_ms", "p99_ms"):
                series[f"{h} {key[:3]}"] = [next(r[key] for r in cri["rows"]
                                                 if r["handler"] == h and r["load"] == n)
                                            for n in loads]
        chart_grouped(plt, [f"{n} pod{'s' if n > 1 else ''} at once" for n in loads], series,
                      out / "cri.png", "CRI pod start (RunPodSandbox + CreateContainer + "
                      "StartContainer)", "ms", by_name=True)
        md.append("## Pods through containerd's CRI (`bench_cri.py`)\n")
        md.append("A private containerd 1.6 with two runtime handlers, `pidsafe` (this "
                  "checkout's containerd-shim-pidsafe-v1) and `runc` (containerd-shim-runc-v2 + "
                  "runc), host-network pods, driven over CRI gRPC; one pod start is "
                  "RunPodSandbox + CreateContainer + StartContainer, timed from the client; the "
                  "handlers take turns in a fresh random order per round.\n")
        md.append("![cri](cri.png)\n")
        md.append(cri_table(cri) + "\n" + checks_table(cri))

    sh = data.get("shim")
    if sh or infos["shim"].get("skipped") != "not run":
        md.append("## Shim (`bench_shim.py`)\n")
        md.append("Its output: [raw/shim.txt](raw/shim.txt).\n")
        if sh and sh.get("medians_ms"):
            med = sh["medians_ms"]
            chart_grouped(plt, list(med), {"ctr run --rm": list(med.values())},
                          out / "shim.png", "containerd: ctr run --rm /bin/true (median)",
                          "ms")
            md.append("![shim](shim.png)\n")
            md.append(shim_table(sh) + "\n")
        if sh and sh.get("checks"):
            md.append(checks_table(sh))

    failed = [i for i in infos.values() if i.get("rc") not in (None, 0)]
    if failed:
        md.append("## Failures\n")
        for i in failed:
            md.append(f"- `{i['command']}` exited {i['rc']}: "
                      + " / ".join(i.get("error", [])) + "\n")
    (out / "README.md").write_text("\n".join(md))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="brief runs: a smoke test, not results")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="run only these (" + ", ".join(b.name for b in BENCHES + [SHIM])
                    + "); keep the others' last results")
    ap.add_argument("--out", default=str(HERE / "report"))
    opts = ap.parse_args()
    plt = ensure_matplotlib()
    out = pathlib.Path(opts.out)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    benches = BENCHES + ([SHIM] if (HERE / SHIM.script).exists() else [])
    if opts.only:
        unknown = set(opts.only) - {b.name for b in BENCHES + [SHIM]}
        if unknown:
            ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        benches = [b for b in benches if b.name in opts.only]
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    infos = {b.name: run_bench(b, raw, opts.quick) for b in benches}
    finished = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    write_report(out, plt, infos, started, finished, opts.quick)
    print(f"report: wrote {out / 'README.md'}", file=sys.stderr)
    return 1 if any(i.get("rc") not in (None, 0) for i in infos.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
