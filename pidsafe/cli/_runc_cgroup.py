"""``pidsafe-runc pause``, ``resume`` and ``update``: a container's cgroup.

Their help, ``update``'s reading of ``--resources`` and of runc's
individual flags, and the commands.  Loaded only for these commands
(``runc.COMMANDS`` imports it on demand).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Dict, Optional, Sequence

from ..errors import UsageError
from .runc import ignoring_config_warnings, load, log_ignored, one_id, parse_or_help

PAUSE_HELP = """usage: pidsafe-runc pause ID

Freeze every process of the container (its cgroup's freezer: v2 cgroup.freeze,
else the v1 freezer).  Returns once the kernel reports the cgroup frozen;
'state' then says "paused"."""

RESUME_HELP = """usage: pidsafe-runc resume ID

Thaw a paused container."""

UPDATE_HELP = """usage: pidsafe-runc update [--resources FILE|-] [OPTIONS] ID

Change the cgroup limits of a created, running or paused container.

  -r, --resources FILE  a linux.resources JSON object (as in config.json; '-': read
                        it from stdin).  Only the fields given change; "devices"
                        are left as they were created (as runc does).  With it,
                        the options below are ignored (as runc does).
  --memory BYTES              memory.limit (suffixes k, m, g, t: 1024-based)
  --memory-reservation BYTES  memory.reservation
  --memory-swap BYTES         memory.swap: memory + swap in total (-1: unlimited)
  --cpu-share N               cpu.shares
  --cpu-quota USECS           cpu.quota (-1: no limit)
  --cpu-period USECS          cpu.period
  --cpuset-cpus LIST          cpu.cpus
  --cpuset-mems LIST          cpu.mems
  --pids-limit N              pids.limit (-1: no limit; 0: unchanged)
Not supported here (refused when non-zero): --blkio-weight, --cpu-rt-period,
--cpu-rt-runtime, --l3-cache-schema, --mem-bw-schema, --kernel-memory,
--kernel-memory-tcp."""


_SIZE = re.compile(r"(-?\d+)\s*([kmgtp]?)i?b?", re.IGNORECASE)


def parse_bytes(flag: str, text: str) -> int:
    """``1048576``, ``1m``, ``512K``, ``2GiB`` (1024-based, as runc's units), ``-1``."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise UsageError(f"--{flag}: not a size in bytes: {text!r}")
    scale: int = 1024 ** " kmgtp".index((m.group(2) or " ").lower())
    return int(m.group(1)) * scale


def _int(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--{flag}: not an integer: {text!r}") from None


def _from_flags(args: Any) -> Dict[str, Any]:
    """The linux.resources object the individual flags describe."""
    for flag in ("blkio-weight", "cpu-rt-period", "cpu-rt-runtime", "kernel-memory",
                 "kernel-memory-tcp", "l3-cache-schema", "mem-bw-schema"):
        value = args.get(flag)
        if value not in (None, "", "0"):
            raise UsageError(f"--{flag} is not supported by pidsafe-runc")
    res: Dict[str, Any] = {}
    memory = {key: parse_bytes(flag, args.get(flag))
              for flag, key in (("memory", "limit"), ("memory-reservation", "reservation"),
                                ("memory-swap", "swap")) if args.get(flag) is not None}
    if memory:
        res["memory"] = memory
    cpu: Dict[str, Any] = {key: _int(flag, args.get(flag))
                           for flag, key in (("cpu-share", "shares"), ("cpu-quota", "quota"),
                                             ("cpu-period", "period"))
                           if args.get(flag) is not None}
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        if args.get(flag) is not None:
            cpu[key] = args.get(flag)
    if cpu:
        res["cpu"] = cpu
    if args.get("pids-limit") is not None:
        limit = _int("pids-limit", args.get("pids-limit"))
        if limit != 0:   # runc: 0 leaves the limit as it is
            res["pids"] = {"limit": limit}
    return res


def _read_resources(source: str) -> Dict[str, Any]:
    try:
        if source == "-":
            data: Any = json.load(sys.stdin)
        else:
            with open(source, encoding="utf-8") as f:
                data = json.load(f)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--resources {source}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--resources {source}: must be a JSON object")
    return data


#: update's options (all take a value).
UPDATE_OPTIONS = (
    "resources", "memory", "memory-reservation", "memory-swap", "cpu-share", "cpu-quota",
    "cpu-period", "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight", "cpu-rt-period",
    "cpu-rt-runtime", "kernel-memory", "kernel-memory-tcp", "l3-cache-schema", "mem-bw-schema")


def update_resources(args: Any) -> Dict[str, Any]:
    """The linux.resources object ``update`` asks for: ``--resources``, else the flags."""
    source: Optional[str] = args.get("resources")
    return _read_resources(source) if source is not None else _from_flags(args)


def _cgroup_command(root: str, argv: Sequence[str], what: str) -> int:
    """pause, resume, update: the container's cgroup."""
    usage = {"pause": PAUSE_HELP, "resume": RESUME_HELP, "update": UPDATE_HELP}[what]
    if what == "update":
        args = parse_or_help(argv, usage, {name: "value" for name in UPDATE_OPTIONS},
                             {"r": "resources"})
    else:
        args = parse_or_help(argv, usage)
    if args is None:
        return 0
    cid = one_id(args, what)
    resources = update_resources(args) if what == "update" else None
    c = load(root, cid)
    try:
        if what == "pause":
            c.pause()
        elif what == "resume":
            c.resume()
        else:
            with ignoring_config_warnings():   # logged below, as runc does
                c.update(resources)
            from ..container import ignored_properties

            log_ignored("--resources", ignored_properties(resources, "linux.resources"))
    finally:
        c.close()
    return 0


def cmd_pause(root: str, argv: Sequence[str]) -> int:
    return _cgroup_command(root, argv, "pause")


def cmd_resume(root: str, argv: Sequence[str]) -> int:
    return _cgroup_command(root, argv, "resume")


def cmd_update(root: str, argv: Sequence[str]) -> int:
    return _cgroup_command(root, argv, "update")
