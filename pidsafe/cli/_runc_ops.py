"""``pidsafe-runc`` start, state, kill, delete, list, ps: one call on a saved container.

Each loads the container from its state file (:meth:`pidsafe.Container.load`)
and makes one call; nothing of create's (the config parser, the planner,
spawn) is imported.
"""

from __future__ import annotations

import time

from .. import _lite
from .runc import (LOG, load, log_hook_warnings, one_id, parse_or_help, parse_signal,
                   usage_error)

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, Sequence


def _state_json(c: Any) -> Dict[str, Any]:
    """runc's ``state`` object of ``c``."""
    st = c.state()
    created = c.created
    out: Dict[str, Any] = {
        "ociVersion": st["ociVersion"], "id": st["id"], "pid": st.get("pid", 0),
        "status": st["status"], "bundle": st["bundle"], "rootfs": c.rootfs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1e9):09d}Z",
        "owner": ""}
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    return out


def _format(args: Any) -> str:
    """``--format table|json`` (table without it); anything else is refused,
    not printed as a table."""
    fmt: str = args.get("format", "table")
    if fmt not in ("table", "json"):
        raise usage_error(f"--format {fmt!r}: must be table or json")
    return fmt


def cmd_start(root: str, argv: Sequence[str]) -> int:
    args = parse_or_help(argv, "usage: pidsafe-runc start ID")
    if args is None:
        return 0
    c = load(root, one_id(args, "start"))
    try:
        log_hook_warnings(c)
        c.start()
    finally:
        c.close()
    return 0


def cmd_state(root: str, argv: Sequence[str]) -> int:
    args = parse_or_help(argv, "usage: pidsafe-runc state ID")
    if args is None:
        return 0
    c = load(root, one_id(args, "state"))
    try:
        print(_lite.dumps_indented(_state_json(c)))
    finally:
        c.close()
    return 0


def cmd_kill(root: str, argv: Sequence[str]) -> int:
    args = parse_or_help(argv, "usage: pidsafe-runc kill [--all] ID [SIGNAL]",
                         {"all": "flag"}, {"a": "all"})
    if args is None:
        return 0
    if not 1 <= len(args.positional) <= 2:
        raise usage_error("kill: expected ID [SIGNAL]")
    sig = parse_signal(args.positional[1]) if len(args.positional) == 2 else _lite.SIGTERM
    c = load(root, args.positional[0])
    try:
        c.kill(sig, all=bool(args.get("all")))
    finally:
        c.close()
    return 0


def cmd_delete(root: str, argv: Sequence[str]) -> int:
    args = parse_or_help(argv, "usage: pidsafe-runc delete [--force] ID",
                         {"force": "flag"}, {"f": "force"})
    if args is None:
        return 0
    from ..errors import ContainerLookupError, ContainerStateError

    force = bool(args.get("force"))
    cid = one_id(args, "delete")
    try:
        c = load(root, cid)
    except ContainerLookupError:
        if force:
            return 0   # runc: delete --force of a missing container succeeds
        raise
    log_hook_warnings(c)
    try:
        c.delete(force=force)
    except ContainerStateError:
        if force:
            raise
        # The library's words are its API's ("force=True"); a shell user's are --force.
        raise ContainerStateError(f"cannot delete container {cid!r}: it is {c.status()}; "
                                  "stop it first (kill), or use --force") from None
    finally:
        c.close()
    return 0


def cmd_list(root: str, argv: Sequence[str]) -> int:
    args = parse_or_help(argv, "usage: pidsafe-runc list [--format table|json] [--quiet]",
                         {"format": "value", "quiet": "flag"}, {"f": "format", "q": "quiet"})
    if args is None:
        return 0
    if args.positional:
        raise usage_error(f"list: takes no arguments, got {' '.join(args.positional)!r}")
    fmt = _format(args)
    from ..container import Container
    from ..errors import ContainerLookupError, Error

    rows = []
    for cid in Container.list(root):
        try:
            c = Container.load(root, cid)
        except ContainerLookupError:   # deleted meanwhile
            continue
        except (Error, OSError, ValueError) as exc:
            # Listed, not hidden: delete still reaches it by its id.
            LOG.write("warning", f"container {cid!r} cannot be loaded: {exc}")
            continue
        try:
            rows.append(_state_json(c))
        finally:
            c.close()
    if args.get("quiet"):
        for r in rows:
            print(r["id"])
    elif fmt == "json":
        print(_lite.dumps(rows))
    else:
        print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<30}OWNER")
        for r in rows:
            print(f"{r['id']:<20}{r['pid']:<10}{r['status']:<10}{r['bundle']:<40}"
                  f"{r['created']:<30}{r['owner']}")
    return 0


def cmd_ps(root: str, argv: Sequence[str]) -> int:
    args = parse_or_help(argv, "usage: pidsafe-runc ps [--format table|json] ID",
                         {"format": "value"}, {"f": "format"})
    if args is None:
        return 0
    fmt = _format(args)
    c = load(root, one_id(args, "ps"))
    try:
        pids = c.pids()
    finally:
        c.close()
    if fmt == "json":
        print(_lite.dumps(pids))
    else:
        print("PID")
        for p in pids:
            print(p)
    return 0
