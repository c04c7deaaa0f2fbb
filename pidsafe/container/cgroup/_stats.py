"""Usage figures of a container's cgroup, from v1 or v2 files (for ``runc events``)."""

from __future__ import annotations

from typing import Mapping, Optional

from ..._value import Record
from ._files import CgroupDir, keyed, read_optional


class CgroupStats(Record):
    """What a cgroup has used; ``None`` where this machine does not say."""

    memory_usage: Optional[int]
    memory_limit: Optional[int]
    oom_kills: Optional[int]
    pids_current: Optional[int]
    pids_limit: Optional[int]
    cpu_usage_ns: Optional[int]


def read_stats(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir]) -> CgroupStats:
    """Read :class:`CgroupStats` where each controller lives (v1 first, then v2).

    Raises:
        CgroupError: a file exists but cannot be read.
    """
    def one(controller: str, v1_name: str, v2_name: str) -> Optional[str]:
        d = next((d for k, d in v1.items() if controller in k.split(",")), None)
        if d is not None:
            return read_optional(d.file(v1_name))
        return None if v2 is None else read_optional(v2.file(v2_name))

    def num(text: Optional[str]) -> Optional[int]:
        text = (text or "").strip()
        return None if not text or text == "max" else int(text)

    has_acct = any("cpuacct" in k.split(",") for k in v1)
    cpu_v2 = None if has_acct or v2 is None else keyed(read_optional(v2.file("cpu.stat")),
                                                       "usage_usec")
    return CgroupStats(
        memory_usage=num(one("memory", "memory.usage_in_bytes", "memory.current")),
        memory_limit=num(one("memory", "memory.limit_in_bytes", "memory.max")),
        oom_kills=keyed(one("memory", "memory.oom_control", "memory.events"), "oom_kill"),
        pids_current=num(one("pids", "pids.current", "pids.current")),
        pids_limit=num(one("pids", "pids.max", "pids.max")),
        cpu_usage_ns=num(one("cpuacct", "cpuacct.usage", "")) if has_acct
        else (None if cpu_v2 is None else cpu_v2 * 1000))
