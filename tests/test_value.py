"""Frozen: immutable values without dataclasses (pidsafe/_value.py)."""

from __future__ import annotations

import copy
import pickle
from typing import FrozenSet

import pytest

from pidsafe._value import Frozen, init_fields


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
