"""``process`` of config.json (and of an exec's process.json): typed and checked.

runtime-spec config.md, "Process" and "Linux Process".  Capability names
and rlimit types are turned into numbers here, so that a misspelt one is a
:class:`~pidsafe.ConfigError` at parse time, before anything is created.
"""

from __future__ import annotations

import resource

from ... import _sys
from ..._value import Record, field
from ...errors import ConfigError, UnsupportedConfigError
from ._reader import (JsonObject, check_abs_path, check_env, check_id, check_str, check_unique,
                      env_dict, one_of)

TYPE_CHECKING = False   # not typing's: typing is only for mypy here
if TYPE_CHECKING:
    from typing import Any, Dict, FrozenSet, Optional, Tuple

#: Linux capability numbers (linux/capability.h), by their OCI names.
CAPABILITIES: Dict[str, int] = {
    f"CAP_{name}": number for number, name in enumerate(_sys.CAPABILITIES)}
CAPABILITY_NAMES: Dict[int, str] = {v: k for k, v in CAPABILITIES.items()}

#: setrlimit(2) resources, by their OCI names.
RLIMITS: Dict[str, int] = {
    name: getattr(resource, name) for name in (
        "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
        "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
        "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
        "RLIMIT_STACK")
    if hasattr(resource, name)}

_RLIM_MAX = 2**64 - 1   # RLIM_INFINITY as OCI writes it (uint64)


class User(Record):
    """``process.user``: who the program runs as, inside the container."""

    uid: int = 0
    gid: int = 0
    umask: Optional[int] = None
    additional_gids: Tuple[int, ...] = ()


class Rlimit(Record):
    """One ``process.rlimits`` entry; ``resource`` is the setrlimit(2) number."""

    type: str
    resource: int
    soft: int
    hard: int


class Capabilities(Record):
    """``process.capabilities``: the five sets, as capability numbers.

    ``None`` for a set means the spec left it out (it is then empty, as runc
    and crun treat it).
    """

    bounding: FrozenSet[int] = frozenset()
    effective: FrozenSet[int] = frozenset()
    inheritable: FrozenSet[int] = frozenset()
    permitted: FrozenSet[int] = frozenset()
    ambient: FrozenSet[int] = frozenset()


class ProcessSpec(Record):
    """``process``: what runs in the container, and how."""

    args: Tuple[str, ...]
    cwd: str
    env: Tuple[str, ...] = ()
    user: User = field(default_factory=User)
    terminal: bool = False
    rlimits: Tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    capabilities: Optional[Capabilities] = None
    oom_score_adj: Optional[int] = None
    #: ``consoleSize`` as (rows, columns): ``height`` and ``width``.
    console_size: Optional[Tuple[int, int]] = None

    def env_dict(self) -> Dict[str, str]:
        """``env`` as a mapping (the last of duplicate names wins, as in execve users)."""
        return env_dict(self.env)


def _cap(value: Any, path: str) -> int:
    name = check_str(value, path)
    number = CAPABILITIES.get(name)
    if number is None:
        raise ConfigError(path, f"unknown capability {name!r}")
    return number


def _rlimit(value: Any, path: str) -> Rlimit:
    o = JsonObject(value, path)
    kind = o.get_str("type")
    number = one_of(kind, o.where("type"), RLIMITS)
    soft = o.get_int("soft", lo=0, hi=_RLIM_MAX)
    hard = o.get_int("hard", lo=0, hi=_RLIM_MAX)
    if soft > hard:
        raise ConfigError(o.where("soft"), f"soft limit {soft} is above the hard limit {hard}")
    o.finish()
    return Rlimit(kind, number, soft, hard)


def _capabilities(o: JsonObject) -> Capabilities:
    sets = {key: frozenset(o.get_list(key, _cap))
            for key in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    o.finish()
    return Capabilities(**sets)


def _user(o: Optional[JsonObject]) -> User:
    if o is None:
        return User()
    uid = o.get_int("uid", 0, lo=0, hi=2**32 - 2)
    gid = o.get_int("gid", 0, lo=0, hi=2**32 - 2)
    umask = o.get_int("umask", None, lo=0, hi=0o777)
    extra = tuple(o.get_list("additionalGids", check_id))
    o.unsupported("username", "user names are for Windows")
    o.finish()
    return User(uid, gid, umask, extra)


#: Properties of ``process`` pidsafe refuses when set, and what they are.
_UNSUPPORTED = {"ioPriority": "I/O priorities", "scheduler": "scheduling policies",
                "execCPUAffinity": "CPU affinity at exec",
                "commandLine": "a command line is for Windows"}


def parse_process(o: JsonObject) -> ProcessSpec:
    """Parse a ``process`` object (config.json's, or an exec's process.json).

    Raises:
        ConfigError: a field is malformed (its JSON path is named).
        UnsupportedConfigError: a field pidsafe does not implement.
    """
    terminal = o.get_bool("terminal", False)
    console_size = _console_size(o.get_obj("consoleSize"))
    args = tuple(o.get_list("args", check_str))
    if not args:
        raise ConfigError(o.where("args"), "is required: at least the program to run")
    cwd = check_abs_path(o.get_str("cwd"), o.where("cwd"))
    env = tuple(o.get_list("env", check_env))
    user = _user(o.get_obj("user"))
    rlimits = tuple(o.get_list("rlimits", _rlimit))
    check_unique(o.where("rlimits"), [r.type for r in rlimits])
    caps_obj = o.get_obj("capabilities")
    caps = _capabilities(caps_obj) if caps_obj is not None else None
    nnp = o.get_bool("noNewPrivileges", False)
    oom = o.get_int("oomScoreAdj", None, lo=-1000, hi=1000)
    o.refuse_label("apparmorProfile")
    o.refuse_label("selinuxLabel")
    for key, what in _UNSUPPORTED.items():
        o.unsupported(key, what)
    o.finish()
    return ProcessSpec(args=args, cwd=cwd, env=env, user=user, terminal=terminal,
                       rlimits=rlimits, no_new_privileges=nnp, capabilities=caps,
                       oom_score_adj=oom, console_size=console_size)


def _console_size(o: Optional[JsonObject]) -> Optional[Tuple[int, int]]:
    """``consoleSize``: {height, width} in characters (a winsize holds 16 bits each)."""
    if o is None:
        return None
    rows = o.get_int("height", lo=0, hi=0xFFFF)
    cols = o.get_int("width", lo=0, hi=0xFFFF)
    o.finish()
    return rows, cols

