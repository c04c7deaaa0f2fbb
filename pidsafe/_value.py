"""Frozen: an immutable value class without :mod:`dataclasses`.

``@dataclass(frozen=True)`` compiles its ``__init__``, ``__eq__``,
``__hash__``, ``__repr__``, ``__setattr__`` and ``__delattr__`` with
``exec`` for every class, and ``import dataclasses`` pulls in
:mod:`inspect` (with ``ast``, ``dis`` and ``tokenize``): several
milliseconds at every start of pidsafe-runc.  The few records that the
commands other than create need (a process identity, a cgroup directory
and layout) derive from :class:`Frozen` instead: fields in ``__slots__``,
set once by a typed ``__init__`` through :func:`init_fields`; equality,
hashing, ``repr``, pickling and :meth:`Frozen.replace` from the fields, in
that order.
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Tuple, TypeVar

    _F = TypeVar("_F", bound="Frozen")


class Frozen:
    """Base of an immutable value: subclasses list their fields in ``__slots__``."""

    __slots__: Tuple[str, ...] = ()

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: "
                             f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: "
                             f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        return (self.__class__, self._values())

    def replace(self: _F, **changes: Any) -> _F:
        """A copy with ``changes`` made (``dataclasses.replace``)."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        return self.__class__(*(changes.get(name, getattr(self, name))
                                for name in self.__slots__))


def init_fields(obj: Frozen, *values: Any) -> None:
    """Set ``obj``'s fields, in ``__slots__`` order (for its ``__init__`` only)."""
    names = obj.__slots__
    if len(values) != len(names):
        raise TypeError(f"{type(obj).__name__} has {len(names)} fields, not {len(values)}")
    for name, value in zip(names, values):
        object.__setattr__(obj, name, value)
