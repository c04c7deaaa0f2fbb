"""``hooks`` of config.json (runtime-spec config.md, "POSIX-platform Hooks").

Six lists of programs the runtime runs at points of the lifecycle, in this
order: ``prestart`` (deprecated) and ``createRuntime`` (during create,
before pivot_root, in the runtime's namespaces), ``createContainer``
(during create, before pivot_root, in the container's namespaces),
``startContainer`` (during start, before the program, in the container),
``poststart`` (after the program started, before start returns) and
``poststop`` (after the container is deleted, before delete returns).
Running them is :mod:`pidsafe.container._hooks`.
"""

from __future__ import annotations

from ..._value import Record

from ...errors import ConfigError
from ._reader import JsonObject, check_abs_path, check_env, check_str, env_dict

TYPE_CHECKING = False   # not typing's: typing is only for mypy here
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

#: The hook lists in lifecycle order: (JSON key, attribute of :class:`Hooks`).
HOOK_KINDS: Tuple[Tuple[str, str], ...] = (
    ("prestart", "prestart"), ("createRuntime", "create_runtime"),
    ("createContainer", "create_container"), ("startContainer", "start_container"),
    ("poststart", "poststart"), ("poststop", "poststop"))


class Hook(Record):
    """One hook: ``path`` run with ``args`` and exactly ``env``.

    ``args`` is the whole argv (``args[0]`` included); when config.json
    gives none, argv is ``[path]``.  ``timeout``: seconds before the hook is
    killed (``None``: no limit).
    """

    path: str
    args: Tuple[str, ...] = ()
    env: Tuple[str, ...] = ()
    timeout: Optional[int] = None

    @property
    def argv(self) -> Tuple[str, ...]:
        return self.args or (self.path,)

    def env_dict(self) -> Dict[str, str]:
        """``env`` as a mapping (the last of duplicate names wins)."""
        return env_dict(self.env)


class Hooks(Record):
    """``hooks``: each list in the order config.json gives it."""

    prestart: Tuple[Hook, ...] = ()
    create_runtime: Tuple[Hook, ...] = ()
    create_container: Tuple[Hook, ...] = ()
    start_container: Tuple[Hook, ...] = ()
    poststart: Tuple[Hook, ...] = ()
    poststop: Tuple[Hook, ...] = ()

    def of(self, kind: str) -> Tuple[Hook, ...]:
        """The list named by its JSON key (``"createRuntime"``...)."""
        for key, attr in HOOK_KINDS:
            if key == kind:
                hooks: Tuple[Hook, ...] = getattr(self, attr)
                return hooks
        raise KeyError(kind)

    @property
    def during_create(self) -> bool:
        """Whether create has hooks to run before pivot_root."""
        return bool(self.prestart or self.create_runtime or self.create_container)


def _hook(value: Any, path: str) -> Hook:
    o = JsonObject(value, path)
    hook_path = o.get_str("path")
    check_abs_path(hook_path, o.where("path"))
    args = tuple(o.get_list("args", check_str))
    env = tuple(o.get_list("env", check_env))
    timeout = o.get_int("timeout", None, lo=1)
    o.finish()
    return Hook(hook_path, args, env, timeout)


def parse_hooks(o: Optional[JsonObject]) -> Hooks:
    """Check ``hooks`` (absent: no hooks).

    Raises:
        ConfigError: a malformed entry (its JSON path is named, e.g.
            ``hooks.poststart[1].timeout: must be at least 1, not 0``).
        UnsupportedConfigError: a key that is not a hook list.
    """
    if o is None:
        return Hooks()
    lists = {attr: tuple(o.get_list(key, _hook)) for key, attr in HOOK_KINDS}
    o.finish()
    return Hooks(**lists)
