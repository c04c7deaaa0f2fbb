"""``linux.resources`` -> the control-file writes that apply it, on v1 or v2.

Pure: :func:`plan` reads no file.  Each controller's limits are written in
the format of the hierarchy the controller lives on (see
:meth:`CgroupLayout.location`), so one config works on v1, v2 and hybrid
machines.  The conversions follow runc (libcontainer/cgroups/fs, fs2 and
utils.go), which is what containerd and the OCI tests expect.
"""

from __future__ import annotations


from ..._value import Record
from ...errors import ConfigError, UnsupportedConfigError
from ._layout import CgroupLayout, Hierarchy
from ..config import DeviceRule, Resources

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Optional

_RES = "linux.resources"


class Write(Record):
    """Write ``value`` to ``file`` of the container's cgroup in ``hierarchy``.

    ``field`` is the config field it comes from (for error messages).
    """

    hierarchy: Hierarchy
    file: str
    value: str
    field: str


def _need(layout: CgroupLayout, controller: str, field: str) -> Hierarchy:
    h = layout.location(controller)
    if h is None:
        raise UnsupportedConfigError(
            field, f"the {controller} cgroup controller is not available here (no v1 "
                   "hierarchy holds it and the v2 root's cgroup.controllers does not list it)")
    return h


def cpu_weight(shares: int) -> int:
    """cgroup v1 ``cpu.shares`` as a v2 ``cpu.weight`` (runc's formula).

    Shares [2, 262144] map linearly onto weights [1, 10000].
    """
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def swap_v2(swap: int, limit: int) -> int:
    """OCI ``memory.swap`` (memory+swap, as in v1) as v2 ``memory.swap.max``.

    ``-1`` means "max" and ``0`` "leave unset", as in runc.
    """
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    return swap - limit


def _memory(layout: CgroupLayout, res: Resources, memsw_now: Optional[int]) -> List[Write]:
    m = res.memory
    if m is None:
        return []
    f = f"{_RES}.memory"
    h = _need(layout, "memory", f)
    limit, swap = m.limit or 0, m.swap or 0
    if swap > 0 and (limit <= 0 or swap < limit):
        raise ConfigError(f"{f}.swap", f"memory+swap {swap} needs a memory limit that is "
                                       f"at most it (limit is {m.limit})")
    out: List[Write] = []
    if not h.v2:
        lim = [Write(h, "memory.limit_in_bytes", str(limit), f"{f}.limit")] if limit else []
        sw = [Write(h, "memory.memsw.limit_in_bytes", str(swap), f"{f}.swap")] if swap else []
        # The kernel keeps memsw >= limit at every moment: raise memsw first
        # when the new limit would pass the current memsw.
        if swap and limit and memsw_now is not None and (swap == -1 or limit > memsw_now):
            out += sw + lim
        else:
            out += lim + sw
        if m.reservation:
            out.append(Write(h, "memory.soft_limit_in_bytes", str(m.reservation),
                             f"{f}.reservation"))
        if m.swappiness is not None:
            out.append(Write(h, "memory.swappiness", str(m.swappiness), f"{f}.swappiness"))
        if m.disable_oom_killer:
            out.append(Write(h, "memory.oom_control", "1", f"{f}.disableOOMKiller"))
        return out
    if m.swappiness is not None:
        raise UnsupportedConfigError(f"{f}.swappiness", "cgroup v2 has no swappiness")
    if m.disable_oom_killer:
        raise UnsupportedConfigError(f"{f}.disableOOMKiller",
                                     "cgroup v2 cannot disable the OOM killer")

    def v2(n: int) -> str:
        return "max" if n < 0 else str(n)

    if limit:
        out.append(Write(h, "memory.max", v2(limit), f"{f}.limit"))
    s = swap_v2(swap, limit)
    if s:
        out.append(Write(h, "memory.swap.max", v2(s), f"{f}.swap"))
    if m.reservation:
        out.append(Write(h, "memory.low", v2(m.reservation), f"{f}.reservation"))
    return out


def _cpu(layout: CgroupLayout, res: Resources) -> List[Write]:
    c = res.cpu
    if c is None:
        return []
    f = f"{_RES}.cpu"
    out: List[Write] = []
    if c.shares or c.quota or c.period or c.burst is not None or c.idle is not None:
        h = _need(layout, "cpu", f)
        if not h.v2:
            if c.shares:
                out.append(Write(h, "cpu.shares", str(c.shares), f"{f}.shares"))
            if c.period:
                out.append(Write(h, "cpu.cfs_period_us", str(c.period), f"{f}.period"))
            if c.quota:
                out.append(Write(h, "cpu.cfs_quota_us", str(max(c.quota, -1)), f"{f}.quota"))
            if c.burst is not None:
                out.append(Write(h, "cpu.cfs_burst_us", str(c.burst), f"{f}.burst"))
        else:
            if c.shares:
                out.append(Write(h, "cpu.weight", str(cpu_weight(c.shares)), f"{f}.shares"))
            if c.quota or c.period:
                value = "max" if not c.quota or c.quota < 0 else str(c.quota)
                if c.period:
                    value += f" {c.period}"
                out.append(Write(h, "cpu.max", value, f"{f}.quota"))
            if c.burst is not None:
                out.append(Write(h, "cpu.max.burst", str(c.burst), f"{f}.burst"))
        if c.idle is not None:
            out.append(Write(h, "cpu.idle", str(c.idle), f"{f}.idle"))
    for key, value in (("cpus", c.cpus), ("mems", c.mems)):
        if value:
            h = _need(layout, "cpuset", f"{f}.{key}")
            out.append(Write(h, f"cpuset.{key}", value, f"{f}.{key}"))
    return out


def device_rule_v1(rule: DeviceRule) -> str:
    """A rule as devices.allow/devices.deny take it, e.g. ``"c 1:3 rwm"``."""
    if rule.type == "a":
        return "a"   # all devices: the kernel ignores the rest of the line
    major = "*" if rule.major is None else str(rule.major)
    minor = "*" if rule.minor is None else str(rule.minor)
    return f"{rule.type} {major}:{minor} {rule.access}"


def device_filter_on_v2(layout: CgroupLayout, res: Resources) -> bool:
    """Whether ``res``'s device rules go to an eBPF filter on v2 (no v1 devices)."""
    return bool(res.devices) and layout.v1_for("devices") is None and layout.v2 is not None


def _devices(layout: CgroupLayout, res: Resources) -> List[Write]:
    if not res.devices or device_filter_on_v2(layout, res):
        return []       # none, or the eBPF filter (_devices_bpf)
    f = f"{_RES}.devices"
    h = layout.v1_for("devices")
    if h is None:
        raise UnsupportedConfigError(f, "no cgroup devices controller: neither a v1 devices "
                                        "hierarchy nor a cgroup v2 mount")
    return [Write(h, "devices.allow" if r.allow else "devices.deny", device_rule_v1(r),
                  f"{f}[{i}]") for i, r in enumerate(res.devices)]


def plan(layout: CgroupLayout, res: Resources, *, memsw_now: Optional[int] = None
         ) -> List[Write]:
    """The writes that apply ``res``, in order.

    ``memsw_now`` is the current v1 ``memory.memsw.limit_in_bytes`` when
    updating a cgroup that has limits already (``None`` for a new cgroup).

    Raises:
        ConfigError: values that cannot go together (swap below the limit).
        UnsupportedConfigError: a controller is missing, or the field has no
            equivalent on the hierarchy that holds its controller.
    """
    out = _memory(layout, res, memsw_now)
    if res.pids_limit:
        h = _need(layout, "pids", f"{_RES}.pids")
        out.append(Write(h, "pids.max", "max" if res.pids_limit < 0 else str(res.pids_limit),
                         f"{_RES}.pids.limit"))
    return out + _cpu(layout, res) + _devices(layout, res)


def controllers(res: Resources) -> frozenset[str]:
    """The controllers ``res`` sets something in."""
    out = set()
    if res.memory is not None:
        out.add("memory")
    if res.pids_limit:
        out.add("pids")
    c = res.cpu
    if c is not None:
        if c.shares or c.quota or c.period or c.burst is not None or c.idle is not None:
            out.add("cpu")
        if c.cpus or c.mems:
            out.add("cpuset")
    if res.devices:
        out.add("devices")
    return frozenset(out)
