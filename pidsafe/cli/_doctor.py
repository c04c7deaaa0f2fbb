"""``pidsafe doctor``: what this machine and this user get of pidsafe, area by area.

Printed as tables (kernel features, capabilities, then one verdict per
area), or with ``--json`` as one JSON object whose schema is stable
(``"schema": 1``; fields are only ever added):

``schema``
    1.
``pidsafe``, ``python``
    the versions.
``kernel``
    ``{"sysname", "release", "machine"}`` (``os.uname()``; for reading only:
    pidsafe probes features, it never compares versions).
``euid``
    the effective uid.
``features``
    a list of ``{"name", "available", "reason", "required", "since", "what"}``
    (:func:`pidsafe.features`; ``reason`` is ``null`` when available;
    ``since`` is the first Linux release that has it).
``capabilities``
    a list of ``{"name", "effective", "used_for"}``, or ``null`` when they
    cannot be read (``capabilities_error`` then says why).
``areas``
    a list of ``{"area", "verdict", "reason", "non_root"}``: ``area`` is one
    of ``spawn``, ``reaper``, ``user_namespaces``, ``idmapped_mounts``,
    ``containers``, ``seccomp``, ``cgroups``; ``verdict`` is ``"ok"``,
    ``"limited"`` or ``"unavailable"`` for the calling user on this
    machine; ``reason`` says why (what is limited, what is missing);
    ``non_root`` what a user without privileges can do in that area.
``ok``
    whether :func:`pidsafe.spawn` works here (the exit status is 0 then,
    else 1).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from .._features import Features
    from .._sys import CapSets

#: The document's version (fields are only ever added).
SCHEMA = 1

#: Capabilities that matter for what pidsafe does, and what for.
CAPS: Tuple[Tuple[str, str], ...] = (
    ("sys_admin", "mounts, idmapped mounts, most namespaces"),
    ("setuid", "uid maps beyond your own uid"),
    ("setgid", "gid maps beyond your own gid"),
    ("sys_chroot", "pivot_root / chroot in containers"),
    ("kill", "signalling processes of other users"),
)

#: What a user without privileges can do, area by area.
NON_ROOT = {
    "spawn": "everything: spawn(), Process, run() and asyncio need no privilege",
    "reaper": "everything: a Reaper, subreaper mode included, needs no privilege",
    "user_namespaces": "a user namespace that maps your own uid and gid once each "
                       "(setgroups denied), where unprivileged user namespaces are "
                       "enabled; any other map needs CAP_SETUID/CAP_SETGID (root)",
    "idmapped_mounts": "nothing: idmapped mounts need CAP_SYS_ADMIN (root)",
    "containers": "nothing: pidsafe creates containers as root only (no rootless mode)",
    "seccomp": "nothing through pidsafe: filters are a container feature, which needs root",
    "cgroups": "nothing: pidsafe writes cgroups as root only (it uses no delegated subtree)",
}


def _area(name: str, verdict: str, reason: str) -> Dict[str, str]:
    return {"area": name, "verdict": verdict, "reason": reason, "non_root": NON_ROOT[name]}


def capabilities() -> Tuple[Optional[CapSets], str]:
    """The calling thread's capabilities, or ``(None, why not)``."""
    from .. import _sys

    try:
        return _sys.capget(), ""
    except OSError as exc:
        return None, str(exc)


def _has(caps: Optional[CapSets], *names: str) -> bool:
    return caps is not None and all(caps.has(n) for n in names)


def _userns(caps: Optional[CapSets]) -> Dict[str, str]:
    """Probe: a user namespace mapping our own ids once (what anyone may do)."""
    from ..userns import IDMap, get_userns_fd

    uid, gid = os.geteuid(), os.getegid()
    try:
        with get_userns_fd(IDMap.parse(f"0:{uid}:1"), IDMap.parse(f"0:{gid}:1")):
            pass
    except (OSError, ValueError) as exc:
        return _area("user_namespaces", "unavailable", f"cannot create one: {exc}")
    if _has(caps, "SETUID", "SETGID", "SYS_ADMIN"):
        return _area("user_namespaces", "ok", "any uid/gid maps")
    return _area("user_namespaces", "limited",
                 "only your own uid and gid, mapped once each: other maps need "
                 "CAP_SETUID and CAP_SETGID")


def _idmapped(f: Features, caps: Optional[CapSets]) -> Dict[str, str]:
    missing = [n for n in ("mount_api", "mount_setattr_idmap") if not getattr(f, n)]
    if missing:
        return _area("idmapped_mounts", "unavailable", "the kernel lacks " + ", ".join(
            f"{n} ({f.reasons.get(n, '?')})" for n in missing))
    if not _has(caps, "SYS_ADMIN"):
        return _area("idmapped_mounts", "unavailable", "needs CAP_SYS_ADMIN (run as root)")
    return _area("idmapped_mounts", "ok", "open_tree + mount_setattr(MOUNT_ATTR_IDMAP); "
                 "each filesystem must support idmapping")


def _seccomp() -> Dict[str, str]:
    from .. import _sys

    with open("/proc/self/status") as fh:
        kernel = any(line.startswith("Seccomp:") for line in fh)
    if not kernel:
        return _area("seccomp", "unavailable", "the kernel has no seccomp (CONFIG_SECCOMP)")
    if not _sys.seccomp.available():
        return _area("seccomp", "unavailable", "pidsafe was built without libseccomp "
                     "(install libseccomp-dev and reinstall): linux.seccomp is refused")
    v = _sys.seccomp.library_version()
    lib = ".".join(map(str, v)) if v else "?"
    return _area("seccomp", "ok", f"libseccomp {lib}: linux.seccomp is compiled to BPF")


def _cgroups() -> Tuple[Dict[str, str], bool]:
    """The cgroup layout, and whether this user can write it."""
    from ..container import CgroupLayout

    try:
        layout = CgroupLayout.detect()
    except (OSError, ValueError) as exc:
        return _area("cgroups", "unavailable", f"cannot read the layout: {exc}"), False
    if layout.v2 is not None and layout.v1:
        kind = f"hybrid: v1 controllers, v2 at {layout.v2.mountpoint}"
    elif layout.v2 is not None:
        kind = f"v2 at {layout.v2.mountpoint}"
    elif layout.v1:
        kind = "v1 only"
    else:
        return _area("cgroups", "unavailable", "no cgroup hierarchy is mounted"), False
    roots = [h.mountpoint for h in (*layout.v1, *([layout.v2] if layout.v2 else []))]
    if not all(os.access(r, os.W_OK) for r in roots):
        return _area("cgroups", "unavailable",
                     f"{kind}; their directories are root's: needs root"), False
    return _area("cgroups", "ok", kind), True


def _containers(f: Features, caps: Optional[CapSets], seccomp: Dict[str, str],
                cgroups_ok: bool) -> Dict[str, str]:
    from .. import _sys

    missing = [n for n in ("clone3", "clone_pidfd", "mount_api", "openat2")
               if not getattr(f, n)]
    if missing:
        return _area("containers", "unavailable", "the kernel lacks " + ", ".join(missing))
    try:
        _sys.program("pidsafe-init")
    except FileNotFoundError as exc:
        return _area("containers", "unavailable", str(exc))
    if not _has(caps, "SYS_ADMIN"):
        return _area("containers", "unavailable",
                     "creating a container needs root (CAP_SYS_ADMIN)")
    limits = []
    if seccomp["verdict"] != "ok":
        limits.append("no linux.seccomp (" + seccomp["reason"] + ")")
    if not cgroups_ok:
        limits.append("no cgroups (linux.cgroupsPath, linux.resources)")
    if limits:
        return _area("containers", "limited", "; ".join(limits))
    return _area("containers", "ok", "OCI bundles in-process and pidsafe-runc")


def report() -> Dict[str, Any]:
    """The doctor's findings, as the JSON document described above."""
    from .. import _sys
    from .._features import FEATURES, REQUIRED, features
    from .._version import __version__

    caps, caps_error = capabilities()
    f = features()
    u = os.uname()
    spawn_missing = [n for n in REQUIRED if not getattr(f, n)]
    areas = []
    if spawn_missing:
        areas.append(_area("spawn", "unavailable", "the kernel lacks " + ", ".join(
            f"{n} ({f.reasons.get(n, '?')})" for n in spawn_missing)))
        areas.append(_area("reaper", "unavailable", "needs spawn"))
    else:
        areas.append(_area("spawn", "ok", "clone3(CLONE_PIDFD), reaped with waitid(P_PIDFD)"))
        try:
            _sys.child_subreaper()
        except OSError as exc:
            areas.append(_area("reaper", "limited", f"no subreaper mode: {exc}"))
        else:
            if f.pidfd_info_exit:
                areas.append(_area("reaper", "ok", "pidfds in epoll; subreaper mode"))
            else:
                areas.append(_area("reaper", "limited",
                                   "a status another waiter reaps first is lost "
                                   "(PIDFD_INFO_EXIT needs Linux 6.15)"))
    areas.append(_userns(caps))
    areas.append(_idmapped(f, caps))
    seccomp = _seccomp()
    cgroups, cgroups_ok = _cgroups()
    areas.append(_containers(f, caps, seccomp, cgroups_ok))
    areas += [seccomp, cgroups]
    return {
        "schema": SCHEMA,
        "pidsafe": __version__,
        "python": sys.version.split()[0],
        "kernel": {"sysname": u.sysname, "release": u.release, "machine": u.machine},
        "euid": os.geteuid(),
        "features": [{"name": n, "available": bool(getattr(f, n)),
                      "reason": None if getattr(f, n) else f.reasons.get(n, "?"),
                      "required": n in REQUIRED, "since": FEATURES[n][1],
                      "what": FEATURES[n][0]} for n in f.names()],
        "capabilities": None if caps is None else [
            {"name": f"CAP_{n.upper()}", "effective": caps.has(n.upper()), "used_for": w}
            for n, w in CAPS],
        **({"capabilities_error": caps_error} if caps is None else {}),
        "areas": areas,
        "ok": not spawn_missing,
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def doctor(as_json: bool = False) -> int:
    """Print what this machine offers pidsafe; 0 if spawn() can work."""
    doc = report()
    if as_json:
        import json

        print(json.dumps(doc, indent=2))
        return 0 if doc["ok"] else 1
    k = doc["kernel"]
    print(f"kernel    {k['sysname']} {k['release']} {k['machine']}")
    print(f"python    {doc['python']}")
    print(f"pidsafe   {doc['pidsafe']}")
    print(f"euid      {doc['euid']}")
    print()
    rows: List[Sequence[str]] = [("feature", "status", "needs", "what")]
    for ft in doc["features"]:
        status = "yes" if ft["available"] else f"NO ({ft['reason']})"
        need = "required" if ft["required"] else "optional"
        rows.append((ft["name"], status, f"{need}, Linux {ft['since']}", ft["what"]))
    print(_table(rows))
    print()
    if doc["capabilities"] is None:
        print(f"capabilities: unknown: {doc['capabilities_error']}")
    else:
        crow: List[Sequence[str]] = [("capability", "effective", "used for")]
        crow += [(c["name"], "yes" if c["effective"] else "no", c["used_for"])
                 for c in doc["capabilities"]]
        print(_table(crow))
    print()
    print(_table([("area", "verdict", "why")] + [
        (a["area"], a["verdict"], a["reason"]) for a in doc["areas"]]))
    if doc["euid"] != 0:
        print()
        print("without root you can:")
        for a in doc["areas"]:
            print(f"  {a['area']}: {a['non_root']}")
    print()
    if not doc["ok"]:
        missing = [ft["name"] for ft in doc["features"] if ft["required"] and not ft["available"]]
        print(f"pidsafe cannot spawn here: missing {', '.join(missing)}")
        return 1
    optional = [ft["name"] for ft in doc["features"] if not ft["available"]]
    if optional:
        print(f"ok: spawn works; unavailable: {', '.join(optional)}")
    else:
        print("ok: every feature pidsafe uses is available")
    return 0
