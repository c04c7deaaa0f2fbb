"""The base class of the generated messages, and the registry of their names.

The classes in :mod:`pidsafe.shim._messages` are generated from the vendored
``.proto`` files (``scripts/gen_shim_messages.py``); :func:`schema` gives each
its fields, and :mod:`._wire` does the encoding with them.  The ``protobuf``
package and its generated modules cost 70-90 ms to import (measured on a
2-core VM), at each of the three starts of a shim per container; this is
plain Python that imports nothing but ``struct``.
"""

from __future__ import annotations

from . import _wire
from ._wire import MAP, REPEATED, Field

TYPE_CHECKING = False   # not typing's: its import costs ms at each shim start
if TYPE_CHECKING:
    from typing import Any, Dict, Tuple, Type, TypeVar

    _M = TypeVar("_M", bound="Message")

_registry: Dict[str, Type[Message]] = {}


def schema(cls: Type[Message], fields: Tuple[Field, ...]) -> None:
    """Give ``cls`` its fields (in number order) and register its full name."""
    cls._fields = tuple(sorted(fields, key=lambda f: f.number))
    cls._by_number = {f.number: f for f in fields}
    _registry[cls.FULL_NAME] = cls


def message_class(full_name: str) -> Type[Message]:
    """The generated class of a proto message by its full name.

    Raises:
        KeyError: no such message among the vendored protos.
    """
    return _registry[full_name]


class Message:
    """Base of the generated message classes.

    Construct with keywords (``CreateTaskResponse(pid=871)``); fields not
    given hold their proto3 default.  A message field holds ``None`` when
    unset; a repeated field is a ``list``, a map a ``dict``; enums are ints.
    Values are checked when encoded, not when assigned.
    """

    __slots__ = ()
    FULL_NAME = ""
    _fields: Tuple[Field, ...] = ()
    _by_number: Dict[int, Field] = {}

    def __init__(self, **values: Any) -> None:
        for f in self._fields:
            v = values.pop(f.name, None)
            if v is None:
                v = f.default()
            elif f.label == REPEATED:
                v = list(v)
            elif f.label == MAP:
                v = dict(v)
            setattr(self, f.name, v)
        if values:
            raise TypeError(f"{type(self).__name__} has no field {sorted(values)[0]!r}")

    def encode(self) -> bytes:
        """The message in the protobuf wire format."""
        out = bytearray()
        _wire.encode(self, out)
        return bytes(out)

    @classmethod
    def decode(cls: Type[_M], data: bytes | bytearray | memoryview) -> _M:
        """Parse the wire format (unknown fields are skipped).

        Raises:
            pidsafe.errors.DecodeError: truncated or malformed data.
        """
        buf = bytes(data)
        msg = cls()
        _wire.decode_into(msg, buf, 0, len(buf))
        return msg

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]   # mutable

    def __repr__(self) -> str:
        parts = []
        for f in self._fields:
            v = getattr(self, f.name)
            if v != f.default():
                parts.append(f"{f.name}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
