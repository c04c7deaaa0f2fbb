"""``Stats``: a container's cgroup as containerd's cgroups ``Metrics`` messages.

Which one, as the runc shim decides (``cgroups.Mode()``): on a v2-only
machine (``/sys/fs/cgroup`` is cgroup2) ``io.containerd.cgroups.v2.Metrics``
from the v2 directory; on a v1 or hybrid one ``io.containerd.cgroups.v1.Metrics``
from the v1 hierarchies (a hybrid machine's v2 mount holds no controller
containerd reads).  Figures are read from the control files as the
containerd/cgroups library reads them (stats/v1, v2/stats): a file that is
missing leaves its fields 0, ``max`` is 2^64-1.
"""

from __future__ import annotations

import os

from . import _messages as m

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional

    from ..container import Cgroup

MAX = (1 << 64) - 1
_NS_PER_TICK = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _num(text: Optional[str]) -> int:
    text = (text or "").strip()
    if not text:
        return 0
    if text == "max":
        return MAX
    try:
        return int(text.split()[0])
    except ValueError:
        return 0


def _keyed(text: Optional[str]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def metrics(cg: Cgroup) -> m.Any:
    """The container's usage, packed as containerd's ``ctr task metrics`` reads it."""
    v1 = cg.v1_paths
    if v1:
        return m.Any.pack(_v1(v1))
    return m.Any.pack(_v2(cg.v2_path or ""))


def _dir(v1: Mapping[str, str], controller: str) -> Optional[str]:
    return next((d for k, d in v1.items() if controller in k.split(",")), None)


def _v1(v1: Mapping[str, str]) -> m.CgroupsV1Metrics:
    out = m.CgroupsV1Metrics()
    pids = _dir(v1, "pids")
    if pids is not None:
        limit = _num(_read(f"{pids}/pids.max"))
        out.pids = m.CgroupsV1PidsStat(current=_num(_read(f"{pids}/pids.current")),
                                       limit=0 if limit == MAX else limit)
    acct, cpu = _dir(v1, "cpuacct"), _dir(v1, "cpu")
    if acct is not None or cpu is not None:
        usage = m.CgroupsV1CPUUsage()
        if acct is not None:
            stat = _keyed(_read(f"{acct}/cpuacct.stat"))
            usage = m.CgroupsV1CPUUsage(
                total=_num(_read(f"{acct}/cpuacct.usage")),
                user=stat.get("user", 0) * _NS_PER_TICK,
                kernel=stat.get("system", 0) * _NS_PER_TICK,
                per_cpu=[int(x) for x in (_read(f"{acct}/cpuacct.usage_percpu") or "").split()])
        throttle = _keyed(_read(f"{cpu}/cpu.stat")) if cpu is not None else {}
        out.cpu = m.CgroupsV1CPUStat(usage=usage, throttling=m.CgroupsV1Throttle(
            periods=throttle.get("nr_periods", 0),
            throttled_periods=throttle.get("nr_throttled", 0),
            throttled_time=throttle.get("throttled_time", 0)))
    mem = _dir(v1, "memory")
    if mem is not None:
        out.memory = _v1_memory(mem)
        oom = _keyed(_read(f"{mem}/memory.oom_control"))
        out.memory_oom_control = m.CgroupsV1MemoryOomControl(
            oom_kill_disable=oom.get("oom_kill_disable", 0), under_oom=oom.get("under_oom", 0),
            oom_kill=oom.get("oom_kill", 0))
    return out


#: memory.stat keys whose field name differs (the rest are spelled alike).
_V1_RENAMED = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault",
               "pgmajfault": "pg_maj_fault", "hierarchical_memsw_limit":
               "hierarchical_swap_limit"}


def _v1_memory(d: str) -> m.CgroupsV1MemoryStat:
    stat = m.CgroupsV1MemoryStat()
    names = {f.name for f in stat._fields}
    for key, value in _keyed(_read(f"{d}/memory.stat")).items():
        total = key.startswith("total_")
        base = key[6:] if total else key
        name = ("total_" if total else "") + _V1_RENAMED.get(base, base)
        if name in names:
            setattr(stat, name, value)

    def entry(prefix: str) -> m.CgroupsV1MemoryEntry:
        return m.CgroupsV1MemoryEntry(
            usage=_num(_read(f"{d}/{prefix}usage_in_bytes")),
            max=_num(_read(f"{d}/{prefix}max_usage_in_bytes")),
            limit=_num(_read(f"{d}/{prefix}limit_in_bytes")),
            failcnt=_num(_read(f"{d}/{prefix}failcnt")))

    stat.usage = entry("memory.")
    stat.swap = entry("memory.memsw.")
    stat.kernel = entry("memory.kmem.")
    stat.kernel_tcp = entry("memory.kmem.tcp.")
    return stat


def _v2(d: str) -> m.CgroupsV2Metrics:
    out = m.CgroupsV2Metrics()
    limit = _num(_read(f"{d}/pids.max"))
    out.pids = m.CgroupsV2PidsStat(current=_num(_read(f"{d}/pids.current")),
                                   limit=0 if limit == MAX else limit)
    cpu = _keyed(_read(f"{d}/cpu.stat"))
    out.cpu = m.CgroupsV2CPUStat(**{k: cpu.get(k, 0) for k in (
        "usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled",
        "throttled_usec")})
    mem = m.CgroupsV2MemoryStat()
    names = {f.name for f in mem._fields}
    for key, value in _keyed(_read(f"{d}/memory.stat")).items():
        if key in names:
            setattr(mem, key, value)
    mem.usage = _num(_read(f"{d}/memory.current"))
    mem.usage_limit = _num(_read(f"{d}/memory.max"))
    mem.swap_usage = _num(_read(f"{d}/memory.swap.current"))
    mem.swap_limit = _num(_read(f"{d}/memory.swap.max"))
    out.memory = mem
    events = _keyed(_read(f"{d}/memory.events"))
    out.memory_events = m.CgroupsV2MemoryEvents(**{k: events.get(k, 0) for k in (
        "low", "high", "max", "oom", "oom_kill")})
    return out
