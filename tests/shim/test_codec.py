"""pidsafe.shim._codec: the proto3 wire format, against protobuf itself.

tests/shim/data/kinds.proto has every construct the codec supports (the
vendored protos use only some); the generator turns it into a module here
and protoc into protobuf classes, and random messages must survive every
crossing between the two, byte for byte where the encoding is canonical.
"""

from __future__ import annotations

import pathlib
import struct
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pbhelp
from pidsafe.errors import DecodeError
from pidsafe.shim import _codec, _wire

DATA = pathlib.Path(__file__).parent / "data"
CLASSES = ["Scalars", "Repeated", "Outer", "Outer_Inner", "Nothing"]


@pytest.fixture(scope="module")
def kinds() -> Iterator[Any]:
    module = pbhelp.load_generated(DATA, ["kinds.proto"], "_test_kinds")
    yield module
    for name in CLASSES:   # out of the registry of full names again
        _codec._registry.pop(getattr(module, name).FULL_NAME, None)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return pbhelp.compile_protos(DATA, ["kinds.proto"], tmp_path_factory.mktemp("kinds"))


@pytest.mark.parametrize("name", CLASSES)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_messages_cross_both_ways(kinds: Any, pool: Any, name: str, data: Any) -> None:
    cls = getattr(kinds, name)
    pb_cls = pbhelp.pb_class(pool, cls.FULL_NAME)
    msg = data.draw(pbhelp.values(cls))
    ours = msg.encode()
    # ours -> protobuf
    parsed = pb_cls.FromString(ours)
    assert pbhelp.from_pb(parsed, cls) == msg
    # protobuf -> ours
    theirs = pbhelp.to_pb(msg, pb_cls()).SerializeToString()
    assert cls.decode(theirs) == msg
    if not pbhelp.has_map(cls):
        assert ours == theirs


def test_wire_details(kinds: Any) -> None:
    S, R = kinds.Scalars, kinds.Repeated
    assert S().encode() == b""                                   # defaults are not written
    assert S(i32=-1).encode() == b"\x08" + b"\xff" * 9 + b"\x01"  # sign-extended to 10 bytes
    assert S(s32=-1).encode() == b"\x28\x01"                      # zigzag
    assert S(flag=True).encode() == b"\x38\x01"
    assert S(dbl=-0.0).encode() == b"\x51" + struct.pack("<d", -0.0)   # -0.0 is not 0 bits
    assert S(high=1).encode() == b"\xf8\xff\xff\xff\x0f\x01"
    assert S(color=kinds.Color.NEGATIVE).encode() == b"\x80\x01" + b"\xf9" + b"\xff" * 8 + b"\x01"
    assert R(u32=[1, 300]).encode() == b"\x1a\x03\x01\xac\x02"    # packed
    assert R(unpacked=[1, 2]).encode() == b"\x88\x01\x01\x88\x01\x02"
    assert R(text=["", "a"]).encode() == b"\x72\x00\x72\x01a"     # empty items are kept
    assert kinds.Outer(inner=kinds.Outer_Inner()).encode() == b"\x0a\x00"   # set but empty


def test_decode_accepts_packed_and_unpacked_alike(kinds: Any) -> None:
    R = kinds.Repeated
    assert R.decode(b"\x18\x01\x18\x02\x1a\x01\x03").u32 == [1, 2, 3]
    assert R.decode(b"\x8a\x01\x02\x01\x02").unpacked == [1, 2]


def test_decode_skips_unknown_fields_of_every_wire_type(kinds: Any) -> None:
    unknown = (b"\xa0\x06\x96\x01"          # 100: varint
               b"\xa9\x06" + bytes(8) +     # 101: fixed64
               b"\xb2\x06\x02hi"            # 102: length-delimited
               b"\xbb\x06\x08\x01\xbc\x06"  # 103: a group holding a varint
               b"\xc5\x06" + bytes(4))      # 104: fixed32
    assert kinds.Scalars.decode(unknown + b"\x08\x05" + unknown).i32 == 5


def test_decode_skips_a_known_field_with_another_wire_type(kinds: Any) -> None:
    # protobuf treats it as unknown; "text" (14) sent as a varint:
    assert kinds.Scalars.decode(b"\x70\x05\x08\x02") == kinds.Scalars(i32=2)


def test_decode_last_scalar_wins_and_messages_merge(kinds: Any) -> None:
    O = kinds.Outer
    data = b"\x0a\x03\x0a\x01a" + b"\x0a\x02\x10\x01"   # inner{name:a}, inner{color:1}
    assert O.decode(data).inner == kinds.Outer_Inner(name="a", color=1)
    assert kinds.Scalars.decode(b"\x08\x01\x08\x02").i32 == 2


def test_decode_map_entry_with_missing_key_or_value(kinds: Any) -> None:
    O = kinds.Outer
    assert O.decode(b"\x1a\x00").labels == {"": ""}
    assert O.decode(b"\x22\x02\x08\x07").by_id == {7: kinds.Outer_Inner()}
    assert O.decode(b"\x1a\x03\x12\x01v\x1a\x03\x12\x01w").labels == {"": "w"}   # last wins


@pytest.mark.parametrize("data, what", [
    (b"\x08", "truncated varint"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10"),
    (b"\x72\x05ab", "past the end"),
    (b"\x72\x01\xff", "UTF-8"),
    (b"\x09\x00\x00", "truncated fixed"),
    (b"\x00\x01", "field number 0"),
    (b"\x0e", "wire type 6"),
    (b"\xbb\x06\x08\x01", "truncated varint"),           # a group never ended
    (b"\xbb\x06\xc4\x06", "mismatched end of group"),
])
def test_malformed_data_raises_decode_error(kinds: Any, data: bytes, what: str) -> None:
    with pytest.raises(DecodeError, match=what):
        kinds.Scalars.decode(data)


def test_nesting_is_bounded(kinds: Any) -> None:
    data = b""
    for _ in range(_wire.MAX_DEPTH + 5):    # Inner.child, nested
        data = b"\x1a" + _wire._varint_bytes(len(data)) + data
    with pytest.raises(DecodeError, match="nested deeper"):
        kinds.Outer_Inner.decode(data)
    # What protobuf itself produces at depth 50 decodes.
    inner = kinds.Outer_Inner()
    for _ in range(50):
        inner = kinds.Outer_Inner(child=inner)
    assert kinds.Outer_Inner.decode(inner.encode()) == inner


@pytest.mark.parametrize("field, value, error", [
    ("i32", 1 << 31, ValueError), ("u32", -1, ValueError), ("u64", 1 << 64, ValueError),
    ("i32", "1", TypeError), ("text", b"x", TypeError), ("data", "x", TypeError),
    ("flag", 2, TypeError), ("dbl", "x", TypeError), ("text", "\udc80", ValueError),
])
def test_encode_refuses_what_does_not_fit_naming_the_field(
        kinds: Any, field: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=f"Scalars.{field}: "):
        kinds.Scalars(**{field: value}).encode()


def test_encode_a_float_beyond_float32_as_infinity(kinds: Any) -> None:
    assert kinds.Scalars.decode(kinds.Scalars(flt=1e300).encode()).flt == float("inf")


def test_message_api(kinds: Any) -> None:
    S, O = kinds.Scalars, kinds.Outer
    with pytest.raises(TypeError, match="no field 'nope'"):
        S(nope=1)
    a = O(inners=(kinds.Outer_Inner(name="x"),), labels=[("k", "v")])
    assert a.inners == [kinds.Outer_Inner(name="x")] and a.labels == {"k": "v"}
    assert O().inners is not O().inners                   # fresh defaults
    assert S(i32=1) == S(i32=1) and S(i32=1) != S(i32=2) and S() != O()
    assert repr(S(i32=1, text="a")) == "Scalars(i32=1, text='a')"
    assert repr(O()) == "Outer()"
    with pytest.raises(AttributeError):
        S().no_such_attribute = 1                       # __slots__
    with pytest.raises(TypeError, match="unhashable"):
        hash(S())
    assert S.decode(bytearray(b"\x08\x01")) == S.decode(memoryview(b"\x08\x01")) == S(i32=1)
    assert _codec.message_class("pidsafe.test.kinds.Outer.Inner") is kinds.Outer_Inner
