"""Frozen: an immutable value class without :mod:`dataclasses`.

``@dataclass(frozen=True)`` compiles its ``__init__``, ``__eq__``,
``__hash__``, ``__repr__``, ``__setattr__`` and ``__delattr__`` with
``exec`` for every class, and ``import dataclasses`` pulls in
:mod:`inspect` (with ``ast``, ``dis`` and ``tokenize``): several
milliseconds at every start of pidsafe-runc.  Its records derive instead
from :class:`Frozen` (fields in ``__slots__``, set once by a typed
``__init__`` through :func:`init_fields`) or from :class:`Record` (fields
declared by annotations, as for a dataclass, with defaults; one shared
``__init__``, no generated code).  Equality, hashing, ``repr``, pickling
and :meth:`Frozen.replace` come from the fields, in that order.
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Dict, FrozenSet, Optional, Tuple, TypeVar

    from typing_extensions import dataclass_transform

    _F = TypeVar("_F", bound="Frozen")
    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs):   # mypy reads typing's; at run time a no-op
        return lambda cls: cls


class Frozen:
    """Base of an immutable value: subclasses list their fields in ``__slots__``.

    A subclass may set ``_fields`` itself to a prefix of its slots: the
    others are caches that take no part in equality, ``repr`` or pickling.
    """

    __slots__: Tuple[str, ...] = ()
    #: The field names, in order (a subclass's ``__slots__`` unless it sets them).
    _fields: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = cls.__dict__.get("__slots__")
        if slots and "_fields" not in cls.__dict__:
            cls._fields = (slots,) if isinstance(slots, str) else tuple(slots)

    def _values(self) -> Tuple[Any, ...]:
        # getattr for each name in C (no generator): equality, hashing and
        # replace() read every field, and records are compared on a
        # container's hot path (an exec's cached plan).
        names = self._fields
        return tuple(map(getattr, (self,) * len(names), names))

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
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        return (self.__class__, self._values())

    def replace(self: _F, **changes: Any) -> _F:
        """A copy with ``changes`` made (``dataclasses.replace``)."""
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        values = dict(zip(self._fields, self._values()))
        values.update(changes)   # in place: the fields' order stays
        return self.__class__(*values.values())


def init_fields(obj: Frozen, *values: Any) -> None:
    """Set ``obj``'s fields, in ``_fields`` order (for its ``__init__`` only)."""
    names = obj._fields
    if len(values) != len(names):
        raise TypeError(f"{type(obj).__name__} has {len(names)} fields, not {len(values)}")
    for name, value in zip(names, values):
        object.__setattr__(obj, name, value)


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], _T]) -> _T:
    """A :class:`Record` field whose default is made anew for each instance."""
    return _Factory(default_factory)  # type: ignore[return-value]


@dataclass_transform(eq_default=True, frozen_default=True, field_specifiers=(field,))
class Record(Frozen):
    """A :class:`Frozen` whose fields are its annotations, as in a dataclass.

    ``x: int`` declares a field; ``x: int = 0`` one with a default;
    ``x: List[int] = field(default_factory=list)`` one with a fresh default.
    Fields of a base Record come first.  The constructor takes them
    positionally or by name, then calls ``__post_init__`` if the class has
    one.  ``class R(Record, frozen=False)`` makes a mutable record (no
    hash), like ``@dataclass`` without ``frozen``.
    """

    __slots__ = ()
    _defaults: ClassVar[Dict[str, Any]] = {}
    #: Whether instances keep their fields in ``__dict__`` (no ``__slots__``).
    _dictful: ClassVar[bool] = False
    #: Whether the class has a ``__post_init__``.
    _post_init: ClassVar[bool] = False
    #: The defaults, if none is made by a factory (else ``None``).
    _plain_defaults: ClassVar[Optional[Dict[str, Any]]] = {}
    #: The field names, as a set.
    _field_set: ClassVar[FrozenSet[str]] = frozenset()

    def __init_subclass__(cls, frozen: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls._fields)
        defaults = dict(cls._defaults)
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if "ClassVar" in str(annotation):
                continue
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
                if isinstance(defaults[name], _Factory):
                    delattr(cls, name)
        with_default = False
        for name in names:
            if name in defaults:
                with_default = True
            elif with_default:
                raise TypeError(f"{cls.__name__}: field {name!r} without a default "
                                "follows one with a default")
        cls._fields = tuple(names)
        cls._defaults = defaults
        cls._field_set = frozenset(names)
        cls._plain_defaults = None if any(isinstance(v, _Factory) for v in defaults.values()) \
            else defaults
        cls._dictful = cls.__dictoffset__ != 0
        cls._post_init = hasattr(cls, "__post_init__")
        if not frozen:
            cls.__setattr__ = object.__setattr__  # type: ignore[method-assign,assignment]
            cls.__delattr__ = object.__delattr__  # type: ignore[method-assign]
            cls.__hash__ = None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._fields
        if not kwargs and len(args) == len(names) and self._dictful:
            # The common case (every field given by position), in one step:
            # records are made by the thousand on a container's hot path.
            self.__dict__.update(zip(names, args))
            if self._post_init:
                self.__post_init__()  # type: ignore[attr-defined]
            return
        plain = self._plain_defaults
        if (not args and plain is not None and self._dictful
                and len(plain) + len(kwargs) >= len(names)
                and kwargs.keys() <= self._field_set):
            # Every field by name or by its plain default (a ChildSpec on
            # spawn()'s hot path): two dict updates, no loop over the fields.
            values = {**plain, **kwargs}
            if len(values) == len(names):
                self.__dict__.update(values)
                if self._post_init:
                    self.__post_init__()  # type: ignore[attr-defined]
                return
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, "
                            f"not {len(args)}")
        values = dict(zip(names, args))
        if kwargs and not kwargs.keys().isdisjoint(values):
            twice = next(name for name in values if name in kwargs)
            raise TypeError(f"{type(self).__name__}() got {twice!r} twice")
        defaults = self._defaults
        for name in names[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif name in defaults:
                value = defaults[name]
                if isinstance(value, _Factory):
                    value = value.make()
            else:
                raise TypeError(f"{type(self).__name__}() misses field {name!r}")
            values[name] = value
        if kwargs:
            raise TypeError(f"{type(self).__name__}() has no field {sorted(kwargs)[0]!r}")
        if self._dictful:
            self.__dict__.update(values)
        else:
            for name, value in values.items():
                object.__setattr__(self, name, value)
        if self._post_init:
            self.__post_init__()  # type: ignore[attr-defined]
