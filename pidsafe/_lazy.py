"""Names of a package imported on first use (PEP 562).

A package's ``__init__`` that imports its modules makes every user of one
module pay for all of them: importing ``pidsafe.container._container``
runs ``pidsafe/__init__.py`` and ``pidsafe/container/__init__.py`` first.
pidsafe-runc starts a new interpreter for every command, so its start,
state, kill and delete would import the config parser, the planner, the
cgroup and mount layers that only create needs.  With :func:`exports` a
package's public names stay where they were, and load when first read.
"""

from __future__ import annotations

import sys

from ._lite import import_module

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Tuple


def exports(package: str, names: Dict[str, str]
            ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, exporting ``names``.

    Args:
        package: the package's ``__name__``.
        names: public name -> the module (relative to ``package``) that
            defines it, or ``"module:name"`` where the module calls it
            otherwise.  A name is imported on first read, then kept in the
            package's namespace (later reads are plain lookups).
    """
    def __getattr__(name: str) -> Any:
        where = names.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = where.partition(":")
        value = getattr(import_module(module, package), attr or name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__

