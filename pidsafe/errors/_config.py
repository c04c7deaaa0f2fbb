"""Errors of a container's config: malformed, unsupported, ignored.

Apart from the container's other errors (``_container``): every command of
pidsafe-runc loads those, and only ``create`` and ``run`` parse a config.
"""

from __future__ import annotations

from ._base import Error, at_face

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Tuple


class ConfigError(Error, ValueError):
    """A bundle's ``config.json`` is malformed or breaks the runtime spec.

    Attributes:
        json_path: where, e.g. ``"linux.namespaces[2].type"``.
        reason: what is wrong with it.
    """

    def __init__(self, json_path: str, reason: str) -> None:
        super().__init__(f"{json_path}: {reason}")
        self.json_path = json_path
        self.reason = reason

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.json_path, self.reason), self.__dict__


class UnsupportedConfigError(ConfigError):
    """A ``config.json`` field runtime-spec defines and pidsafe does not implement
    (refused, never ignored; a property the spec does not define is ignored)."""

    def __init__(self, json_path: str, what: str) -> None:
        super().__init__(json_path, f"not supported by pidsafe ({what})")
        self.what = what

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.json_path, self.what), self.__dict__


class IgnoredConfigWarning(Error, UserWarning):
    """A ``config.json`` property pidsafe ignored: one runtime-spec does not
    define (a misspelt field?), or a section for another platform.

    Issued once per property by :meth:`pidsafe.Container.create` (pass
    ``strict=True`` to refuse such a config instead), through
    :mod:`warnings`.

    Attributes:
        json_path: the property, e.g. ``"linux.namespace"``.
        reason: why it was ignored.
    """

    def __init__(self, json_path: str, reason: str) -> None:
        super().__init__(f"config.json: {json_path} ignored: {reason}")
        self.json_path = json_path
        self.reason = reason

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.json_path, self.reason), self.__dict__


at_face(ConfigError, UnsupportedConfigError, IgnoredConfigWarning)
