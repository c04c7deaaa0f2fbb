"""Whether a container is paused, read from the cgroup paths its state records.

``state``, ``start`` and ``kill`` report or check ``paused`` on every call,
and each is a new interpreter (pidsafe-runc): this reads the kernel's two
freezer files with plain ``open()``, without importing the cgroup layer
(tests/cli/test_runc_imports.py).  The cgroup layer's own check is
:func:`._freezer.is_frozen`; both say frozen when either freezer
says so.
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


#: More than ``freezer.state`` or ``cgroup.events`` ever holds.
_MAX = 4096


def _read(path: str) -> Optional[str]:
    try:
        # Unbuffered bytes: no text layer and its isatty/seek calls (every
        # exec checks the freezer).  One bounded read: a kernfs file of a
        # few words comes whole in the first read(2), where read() to EOF
        # adds an fstat, an lseek and a second read.  UTF-8: the same for
        # these ASCII words.
        with open(path, "rb", buffering=0) as f:
            return f.read(_MAX).decode("utf-8", "replace")
    except OSError:   # gone (stopped, deleted) or no such freezer
        return None


def is_paused(cg: Optional[Dict[str, Any]]) -> bool:
    """Whether the cgroup ``cg`` describes (:meth:`Cgroup.to_dict
    <pidsafe.container.Cgroup.to_dict>`, as a container's state records it)
    is frozen now."""
    if not isinstance(cg, dict):
        return False
    v2 = cg.get("v2")
    if isinstance(v2, dict) and isinstance(v2.get("path"), str):
        events = _read(v2["path"] + "/cgroup.events")
        if events is not None and "frozen 1" in events.splitlines():
            return True
    v1 = cg.get("v1")
    if isinstance(v1, dict):
        for key, d in v1.items():
            if "freezer" in key.split(",") and isinstance(d, dict) and \
                    isinstance(d.get("path"), str):
                state = _read(d["path"] + "/freezer.state")
                return state is not None and state.strip() == "FROZEN"
    return False
