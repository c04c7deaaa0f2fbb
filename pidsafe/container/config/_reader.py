"""Reading ``config.json`` with a JSON path for every value.

Every value is read through a :class:`JsonObject` that knows where it is in
the document (``linux.namespaces[2].type``) and which of its keys have been
read.  Once a section is parsed, :meth:`JsonObject.finish` refuses every key
nobody read that runtime-spec defines: a field pidsafe does not implement is
an error naming its JSON path, never silently ignored.  A key the spec does
not define is ignored, as its "Extensibility" section requires, and listed by
:func:`ignored_properties`.  ``null`` counts as absent, as Go's
``omitempty`` producers (containerd, runc) would have left the key out.
"""

from __future__ import annotations

import sys

from ...errors import ConfigError, UnsupportedConfigError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, TypeVar

    T = TypeVar("T")

_MISSING: Any = object()

#: Largest uid/gid/major/minor etc. the kernel takes (uint32 - 1 for ids).
MAX_U32 = 2**32 - 1

#: Top-level sections for other operating systems, ignored on Linux (see
#: :data:`._spec_keys.OTHER_PLATFORMS` for why).
OTHER_PLATFORMS = ("windows", "solaris", "zos", "freebsd")
#: The properties of an OCI id mapping (``linux.uidMappings[]`` ...).
ID_MAPPING_KEYS = ("containerID", "hostID", "size")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class JsonObject:
    """One JSON object of the config, read key by key."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(path or "(document)", f"must be an object, not {_type_name(value)}")
        self.value: Dict[str, Any] = value
        self.path = path
        self._read: Set[str] = set()

    def where(self, key: str) -> str:
        return child_path(self.path, key)

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value (``None`` if absent or null), marked as read."""
        self._read.add(key)
        return self.value.get(key)

    def _get(self, key: str, check: Callable[[Any, str], T], default: Any) -> T:
        value = self.raw(key)
        if value is None:
            if default is _MISSING:
                raise ConfigError(self.where(key), "is required")
            return default  # type: ignore[no-any-return]
        return check(value, self.where(key))

    def get_str(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, check_str, default)

    def get_bool(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, check_bool, default)

    def get_int(self, key: str, default: Any = _MISSING, *, lo: Optional[int] = None,
            hi: Optional[int] = None) -> Any:
        return self._get(key, lambda v, p: check_int(v, p, lo, hi), default)

    def get_obj(self, key: str) -> Optional["JsonObject"]:
        value = self.raw(key)
        return None if value is None else JsonObject(value, self.where(key))

    def get_list(self, key: str, item: Callable[[Any, str], T]) -> List[T]:
        value = self.raw(key)
        if value is None:
            return []
        path = self.where(key)
        if not isinstance(value, list):
            raise ConfigError(path, f"must be an array, not {_type_name(value)}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def get_str_map(self, key: str) -> Dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        path = self.where(key)
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be an object, not {_type_name(value)}")
        return {k: check_str(v, child_path(path, k)) for k, v in value.items()}

    def unsupported(self, key: str, what: str, *, allow: Callable[[Any], bool] = lambda v: False
                    ) -> None:
        """Refuse ``key`` (unless ``allow(value)``, e.g. an empty value)."""
        value = self.raw(key)
        if value is not None and not allow(value):
            raise UnsupportedConfigError(self.where(key), what)

    def refuse_label(self, key: str) -> None:
        """Refuse ``key``, an SELinux label or AppArmor profile, when it is set
        (``""`` is not): the message says whether the LSM is enabled here."""
        if self.raw(key) not in (None, ""):
            from ._lsm import refusal

            raise UnsupportedConfigError(self.where(key), refusal(key))

    def finish(self, ignored: Tuple[str, ...] = ()) -> None:
        """Refuse every unread key that runtime-spec defines for this object.

        ``ignored``: keys this object reads and ignores on purpose.  A key
        the spec does not define is left alone, as the spec's
        "Extensibility" requires (:func:`ignored_properties` lists it); in
        an object the table does not know, every unread key is refused.
        """
        unread = [key for key, value in self.value.items()
                  if key not in self._read and key not in ignored and value is not None]
        if not unread:
            return
        from ._spec_keys import defined_keys

        defined = defined_keys(self.path)
        for key in unread:
            if defined is None or key in defined:
                raise UnsupportedConfigError(
                    self.where(key), "runtime-spec defines it; pidsafe does not implement it")


def ignored_properties(document: Any, root: str = "") -> Tuple[str, ...]:
    """:func:`._spec_keys.ignored_paths` of a document just parsed, without
    loading the table when no parser needed it.

    Every parser that lets a property through loads :mod:`._spec_keys` first
    (:meth:`JsonObject.finish` to tell the spec's from the unknown,
    :func:`id_mappings`, ``parse_spec`` for :data:`OTHER_PLATFORMS`).  So
    while the table is not loaded no document has had anything to ignore, and
    a config without unknown properties costs pidsafe-runc no import.
    """
    table = sys.modules.get(f"{__package__}._spec_keys")
    if table is None:
        return ()
    paths: Tuple[str, ...] = table.ignored_paths(document, root)
    return paths


def id_mappings(value: Any) -> Any:
    """OCI id mappings with the properties runtime-spec does not define left
    out (they are ignored, and listed by :func:`ignored_properties`), for
    :meth:`~pidsafe.userns.IDMap.from_oci`, which refuses them."""
    if not isinstance(value, list) or all(
            not isinstance(m, dict) or all(k in ID_MAPPING_KEYS for k in m) for m in value):
        return value
    from ._spec_keys import DEFINED  # noqa: F401  (see ignored_properties)

    return [{k: v for k, v in m.items() if k in ID_MAPPING_KEYS} if isinstance(m, dict) else m
            for m in value]


def check_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, not {_type_name(value)}")
    if "\0" in value:
        raise ConfigError(path, "contains a NUL byte")
    return value


def check_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be a boolean, not {_type_name(value)}")
    return value


def check_int(value: Any, path: str, lo: Optional[int] = None,
              hi: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(path, f"must be an integer, not {_type_name(value)}: {value!r}")
    assert isinstance(value, int)
    if lo is not None and value < lo:
        raise ConfigError(path, f"must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise ConfigError(path, f"must be at most {hi}, not {value}")
    return value


def check_abs_path(value: Any, path: str) -> str:
    s = check_str(value, path)
    if not s.startswith("/"):
        raise ConfigError(path, f"must be an absolute path, not {s!r}")
    return s


def check_env(value: Any, path: str) -> str:
    """A ``NAME=VALUE`` environment entry (``process.env``, a hook's ``env``)."""
    item = check_str(value, path)
    name, eq, _ = item.partition("=")
    if not eq or not name:
        raise ConfigError(path, f"must be NAME=VALUE, not {item!r}")
    return item


def env_dict(entries: Tuple[str, ...]) -> Dict[str, str]:
    """``NAME=VALUE`` entries (each passed :func:`check_env`) as a mapping; the
    last of duplicate names wins, as for the programs that read them."""
    out: Dict[str, str] = {}
    for item in entries:
        name, _, value = item.partition("=")
        out[name] = value
    return out


def check_id(value: Any, path: str) -> int:
    """A uid or gid: 0 .. 2**32 - 2."""
    return check_int(value, path, 0, MAX_U32 - 1)


def one_of(value: str, path: str, choices: Mapping[str, T]) -> T:
    try:
        return choices[value]
    except KeyError:
        raise ConfigError(path, f"must be one of {', '.join(sorted(choices))}, "
                                f"not {value!r}") from None


def check_unique(path: str, types: List[str], what: str = "{}") -> None:
    """Refuse a ``type`` that appears twice in the list at ``path``.

    ``what`` formats the type for the message (``"namespace {!r}"``).

    Raises:
        ConfigError: naming the second one (``path[i].type``) and the first.
    """
    seen: Dict[str, int] = {}
    for i, t in enumerate(types):
        if t in seen:
            raise ConfigError(f"{path}[{i}].type",
                              f"{what.format(t)} appears twice (also at [{seen[t]}])")
        seen[t] = i


def check_ignored(paths: Tuple[str, ...], strict: bool = False, *, stacklevel: int = 2) -> None:
    """Warn for each ignored property (JSON path) of config.json, or
    (``strict``) refuse the first; ``stacklevel`` as for ``warnings.warn``,
    counted from the caller of this function.

    Raises:
        ConfigError: ``strict`` and a property is ignored (nothing exists yet).
    """
    if not paths:
        return
    import warnings

    from ...errors import IgnoredConfigWarning

    for json_path in paths:
        why = ("a section for another platform" if json_path in OTHER_PLATFORMS
               else "runtime-spec does not define it (a misspelt field?)")
        if strict:
            raise ConfigError(json_path, f"{why}; refused with strict=True")
        warnings.warn(IgnoredConfigWarning(json_path, why), stacklevel=stacklevel + 1)
