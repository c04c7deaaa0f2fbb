"""Frozen: immutable values without dataclasses (pidsafe/_value.py)."""

from __future__ import annotations

import copy
import pickle
from typing import ClassVar, FrozenSet, List

import pytest

from pidsafe._value import Frozen, Record, field, init_fields


class Point(Frozen):
    __slots__ = ("x", "tags")
    x: int
    tags: FrozenSet[str]

    def __init__(self, x: int, tags: FrozenSet[str] = frozenset()) -> None:
        init_fields(self, x, tags)


class Other(Frozen):
    __slots__ = ("x", "tags")

    def __init__(self, x: int, tags: FrozenSet[str]) -> None:
        init_fields(self, x, tags)


def test_equal_and_hash_by_fields_and_class() -> None:
    a, b = Point(1, frozenset({"t"})), Point(1, frozenset({"t"}))
    assert a == b and hash(a) == hash(b) and len({a, b, Point(2)}) == 2
    assert a != Point(1) and a != Other(1, frozenset({"t"})) and a != (1, frozenset({"t"}))


def test_fields_cannot_change_or_grow() -> None:
    p = Point(1)
    with pytest.raises(AttributeError, match="immutable"):
        p.x = 2   # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del p.x
    with pytest.raises(AttributeError):
        p.y = 3   # type: ignore[attr-defined]
    assert p.x == 1 and not hasattr(p, "__dict__")


def test_repr_pickle_copy() -> None:
    p = Point(1, frozenset({"t"}))
    assert repr(p) == "Point(x=1, tags=frozenset({'t'}))"
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.deepcopy(p) == p and copy.copy(p) == p


def test_init_fields_wants_every_field() -> None:
    with pytest.raises(TypeError, match="2 fields, not 1"):
        init_fields(Point(1), 5)


def test_replace_copies_with_changes() -> None:
    p = Point(1, frozenset({"t"}))
    assert p.replace(x=2) == Point(2, frozenset({"t"})) and p.x == 1
    assert p.replace() == p
    with pytest.raises(TypeError, match="no field 'y'"):
        p.replace(y=3)


# -- Record: fields from annotations, as a dataclass declares them --------------

class Box(Record):
    """A record with a required field, a default and a fresh mutable default."""

    name: str
    size: int = 0
    tags: List[str] = field(default_factory=list)
    kind: ClassVar[str] = "box"   # not a field


class Crate(Box):
    weight: int = 1


class Counter(Record, frozen=False):
    count: int = 0


class Checked(Record):
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


def test_record_takes_fields_positionally_or_by_name_with_defaults() -> None:
    b = Box("a", 2, ["t"])
    assert (b.name, b.size, b.tags) == ("a", 2, ["t"])
    assert Box("a") == Box(name="a", size=0) == Box("a", tags=[])
    assert Box._fields == ("name", "size", "tags") and Box.kind == "box"
    assert Box("a").tags is not Box("a").tags   # a fresh list each time
    assert not hasattr(Box, "tags")              # the factory is not a class attribute


def test_record_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="misses field 'name'"):
        Box()   # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field 'colour'"):
        Box("a", colour="red")   # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'name' twice"):
        Box("a", name="b")   # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 3 arguments, not 4"):
        Box("a", 1, [], 5)   # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'late' without a default follows"):
        class Bad(Record):   # pylint: disable=unused-variable
            early: int = 0
            late: int   # type: ignore[misc]


class Plain(Record):
    """Defaults only plain values: by name, the fast path of Record.__init__."""

    a: int
    b: int = 1
    c: str = "x"


def test_record_by_name_with_plain_defaults() -> None:
    assert Plain(a=1) == Plain(1, 1, "x") and Plain(c="y", a=2) == Plain(2, 1, "y")
    assert repr(Plain(c="y", b=3, a=2)) == "Plain(a=2, b=3, c='y')"
    with pytest.raises(TypeError, match="misses field 'a'"):
        Plain(b=2)   # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field 'z'"):
        Plain(a=1, z=2)   # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field 'z'"):
        Plain(a=1, b=1, c="", z=2)   # type: ignore[call-arg]
    with pytest.raises(ValueError, match="negative"):
        Checked(value=-1)


def test_record_is_a_frozen_value() -> None:
    b = Box("a", 2)
    with pytest.raises(AttributeError, match="immutable"):
        b.size = 3   # type: ignore[misc]
    assert hash(b.replace(tags=())) == hash(Box("a", 2, ()))   # type: ignore[arg-type]
    assert repr(b) == "Box(name='a', size=2, tags=[])"
    assert pickle.loads(pickle.dumps(b)) == b and copy.deepcopy(b) == b
    assert b.replace(size=5) == Box("a", 5) and b.size == 2
    assert b != Crate("a", 2) and Crate("a") == Crate("a", 0, [], 1)
    assert Crate._fields == ("name", "size", "tags", "weight")
    assert repr(Crate("c", weight=3)) == "Crate(name='c', size=0, tags=[], weight=3)"


def test_record_mutable_and_post_init() -> None:
    c = Counter()
    c.count += 1
    assert c == Counter(1) and Counter.__hash__ is None
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
    assert Checked(1).value == 1


class Cached(Frozen):
    """One field and a cache derived from it (as IDMap keeps its kernel form)."""

    __slots__ = ("x", "_double")
    _fields = ("x",)
    x: int
    _double: int

    def __init__(self, x: int) -> None:
        init_fields(self, x)
        object.__setattr__(self, "_double", 2 * x)


def test_frozen_fields_may_be_fewer_than_slots() -> None:
    c = Cached(2)
    assert c == Cached(2) and repr(c) == "Cached(x=2)" and c._double == 4
    assert pickle.loads(pickle.dumps(c))._double == 4
