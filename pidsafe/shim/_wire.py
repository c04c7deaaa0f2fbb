"""The proto3 wire format, driven by the schemas of the generated messages.

https://protobuf.dev/programming-guides/encoding/:

- a record is a key varint ``number << 3 | wire type`` and a value: a varint
  (0), 8 little-endian bytes (1), a length-prefixed run (2) or 4 bytes (5);
- proto3 writes no field that holds its default (0, "", b"", False, an empty
  list or map, an unset message), and reads a missing field as its default;
- repeated numbers are written packed (one length-prefixed run), and read
  either way; a map is a repeated entry message ``{key = 1; value = 2}``;
- an unknown field, or a known one sent with another wire type, is skipped.

Each message class has ``_fields`` (a tuple of :class:`Field`, in number
order) and ``_by_number``; :mod:`._codec` gives them, this module reads them.
"""

from __future__ import annotations

import struct

from ..errors import DecodeError

TYPE_CHECKING = False   # not typing's: its import costs ms at each shim start
if TYPE_CHECKING:
    from typing import Any, Dict, Tuple

    from ._codec import Message

# Kinds of field value.  Varint kinds first, then fixed, then length-delimited.
INT32, INT64, UINT32, UINT64, SINT32, SINT64, BOOL, ENUM = range(8)
FIXED64, SFIXED64, DOUBLE, FIXED32, SFIXED32, FLOAT = range(8, 14)
STRING, BYTES, MESSAGE = range(14, 17)
# Labels.
SINGLE, REPEATED, MAP = range(3)

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_MASK64 = (1 << 64) - 1
_ZERO8 = bytes(8)
MAX_DEPTH = 100   # nesting limit on decode, as protobuf's default recursion limit

_WIRE = {k: _VARINT for k in range(8)}
_WIRE.update({FIXED64: _I64, SFIXED64: _I64, DOUBLE: _I64,
              FIXED32: _I32, SFIXED32: _I32, FLOAT: _I32,
              STRING: _LEN, BYTES: _LEN, MESSAGE: _LEN})
_STRUCT = {FIXED64: struct.Struct("<Q"), SFIXED64: struct.Struct("<q"),
           DOUBLE: struct.Struct("<d"), FIXED32: struct.Struct("<I"),
           SFIXED32: struct.Struct("<i"), FLOAT: struct.Struct("<f")}
_DEFAULT: Dict[int, object] = {k: 0 for k in range(8)}
_DEFAULT.update({BOOL: False, DOUBLE: 0.0, FLOAT: 0.0, STRING: "", BYTES: b""})
_DEFAULT.update({k: 0 for k in (FIXED64, SFIXED64, FIXED32, SFIXED32)})
# Inclusive ranges of the integer kinds (encode refuses what does not fit).
_RANGE = {INT32: (-(1 << 31), (1 << 31) - 1), ENUM: (-(1 << 31), (1 << 31) - 1),
          SINT32: (-(1 << 31), (1 << 31) - 1), SFIXED32: (-(1 << 31), (1 << 31) - 1),
          INT64: (-(1 << 63), (1 << 63) - 1), SINT64: (-(1 << 63), (1 << 63) - 1),
          SFIXED64: (-(1 << 63), (1 << 63) - 1),
          UINT32: (0, (1 << 32) - 1), FIXED32: (0, (1 << 32) - 1),
          UINT64: (0, _MASK64), FIXED64: (0, _MASK64)}

class Field:
    """One field of a message's schema (made by the generated module)."""

    __slots__ = ("number", "name", "kind", "label", "ref", "wire", "key", "packable", "packed")

    def __init__(self, number: int, name: str, kind: int, label: int = SINGLE,
                 ref: Any = None, packed: bool = True) -> None:
        #: ``ref``: the message class of a MESSAGE field; for a MAP, the
        #: entry's (key, value) fields.
        self.number, self.name, self.kind, self.label, self.ref = number, name, kind, label, ref
        self.wire = _LEN if label == MAP else _WIRE[kind]
        #: Repeated numbers may come packed or not; ``packed`` says how we write them.
        self.packable = label == REPEATED and self.wire != _LEN
        self.packed = packed and self.packable
        self.key = _varint_bytes(number << 3 | (_LEN if self.packed else self.wire))

    def default(self) -> Any:
        if self.label == REPEATED:
            return []
        if self.label == MAP:
            return {}
        return None if self.kind == MESSAGE else _DEFAULT[self.kind]



# == encoding ===================================================================

def _varint_bytes(v: int) -> bytes:
    out = bytearray()
    _varint(out, v)
    return bytes(out)


def _varint(out: bytearray, v: int) -> None:
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _is_default(f: Field, v: Any) -> bool:
    if f.label != SINGLE:
        return not v
    if f.kind == MESSAGE:
        return v is None
    if f.kind in (FLOAT, DOUBLE) and isinstance(v, float):
        # -0.0 is written: proto3 skips a float only when all its bits are 0.
        return _STRUCT[DOUBLE].pack(v) == _ZERO8
    return bool(v == _DEFAULT[f.kind])


def encode(msg: Message, out: bytearray) -> None:
    """Append the encoding of ``msg`` to ``out``."""
    for f in msg._fields:
        v = getattr(msg, f.name)
        if _is_default(f, v):
            continue
        try:
            if f.label == SINGLE:
                out += f.key
                _encode_value(f.kind, v, out)
            elif f.label == MAP:
                kf, vf = f.ref
                for k, item in v.items():
                    entry = bytearray(kf.key)
                    _encode_value(kf.kind, k, entry)
                    entry += vf.key
                    _encode_value(vf.kind, item if item is not None or vf.kind != MESSAGE
                                  else vf.ref(), entry)
                    out += f.key
                    _varint(out, len(entry))
                    out += entry
            elif f.packed:
                run = bytearray()
                for item in v:
                    _encode_value(f.kind, item, run)
                out += f.key
                _varint(out, len(run))
                out += run
            else:
                for item in v:
                    out += f.key
                    _encode_value(f.kind, item, out)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{type(msg).__name__}.{f.name}: {e}") from None


def _encode_value(kind: int, v: Any, out: bytearray) -> None:
    if kind <= ENUM:
        if kind == BOOL:
            if not isinstance(v, (bool, int)) or v not in (0, 1):
                raise TypeError(f"expected bool, got {v!r}")
            out.append(1 if v else 0)
            return
        if not isinstance(v, int):
            raise TypeError(f"expected int, got {type(v).__name__}")
        lo, hi = _RANGE[kind]
        if not lo <= v <= hi:
            raise ValueError(f"{v} out of range")
        if kind == SINT32:
            v = ((v << 1) ^ (v >> 31)) & 0xFFFFFFFF
        elif kind == SINT64:
            v = ((v << 1) ^ (v >> 63)) & _MASK64
        _varint(out, v & _MASK64)
    elif kind < STRING:
        if kind in (DOUBLE, FLOAT):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise TypeError(f"expected float, got {type(v).__name__}")
        else:
            if not isinstance(v, int):
                raise TypeError(f"expected int, got {type(v).__name__}")
            lo, hi = _RANGE[kind]
            if not lo <= v <= hi:
                raise ValueError(f"{v} out of range")
        try:
            out += _STRUCT[kind].pack(v)
        except OverflowError:   # a float32 field: out of range is infinite, as a C cast
            out += _STRUCT[kind].pack(v * float("inf"))
    elif kind == STRING:
        if not isinstance(v, str):
            raise TypeError(f"expected str, got {type(v).__name__}")
        try:
            data = v.encode("utf-8")
        except UnicodeEncodeError as e:   # a lone surrogate
            raise ValueError(f"not encodable as UTF-8: {e.reason}") from None
        _varint(out, len(data))
        out += data
    elif kind == BYTES:
        if not isinstance(v, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(v).__name__}")
        _varint(out, len(v))
        out += v
    else:
        if getattr(type(v), "_by_number", None) is None:   # not a generated message
            raise TypeError(f"expected a message, got {type(v).__name__}")
        sub = bytearray()
        encode(v, sub)
        _varint(out, len(sub))
        out += sub


# == decoding ===================================================================

def _read_varint(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _read_len(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    n, pos = _read_varint(buf, pos, end)
    if n > end - pos:
        raise DecodeError(f"length {n} runs past the end of the data")
    return pos + n, pos


def _skip(buf: bytes, pos: int, end: int, wire: int, number: int, depth: int) -> int:
    if wire == _VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire in (_I64, _I32):
        pos += 8 if wire == _I64 else 4
        if pos > end:
            raise DecodeError("truncated fixed-width value")
        return pos
    if wire == _LEN:
        return _read_len(buf, pos, end)[0]
    if wire == _SGROUP:
        if depth >= MAX_DEPTH:
            raise DecodeError("groups nested too deep")
        while True:
            key, pos = _read_varint(buf, pos, end)
            if key & 7 == _EGROUP:
                if key >> 3 != number:
                    raise DecodeError("mismatched end of group")
                return pos
            pos = _skip(buf, pos, end, key & 7, key >> 3, depth + 1)
    raise DecodeError(f"invalid wire type {wire}")


def _scalar(kind: int, buf: bytes, pos: int, end: int) -> Tuple[Any, int]:
    """One value of ``kind`` at ``pos``: (value, position after it)."""
    if kind <= ENUM:
        v, pos = _read_varint(buf, pos, end)
        if kind == BOOL:
            return v != 0, pos
        if kind in (INT32, ENUM):
            v &= 0xFFFFFFFF
            return (v - (1 << 32) if v >= 1 << 31 else v), pos
        if kind == INT64:
            return (v - (1 << 64) if v >= 1 << 63 else v), pos
        if kind == UINT32:
            return v & 0xFFFFFFFF, pos
        if kind == SINT32:
            v &= 0xFFFFFFFF
        return ((v >> 1) ^ -(v & 1) if kind != UINT64 else v), pos
    if kind < STRING:
        st = _STRUCT[kind]
        if pos + st.size > end:
            raise DecodeError("truncated fixed-width value")
        return st.unpack_from(buf, pos)[0], pos + st.size
    stop, pos = _read_len(buf, pos, end)
    if kind == BYTES:
        return buf[pos:stop], stop
    try:
        return buf[pos:stop].decode("utf-8"), stop
    except UnicodeDecodeError:
        raise DecodeError("string field is not valid UTF-8") from None


def decode_into(msg: Message, buf: bytes, pos: int, end: int, depth: int = 0) -> None:
    """Decode ``buf[pos:end]`` into ``msg`` (fields present replace or extend its own).

    Raises:
        pidsafe.errors.DecodeError: the data is truncated or malformed.
    """
    if depth >= MAX_DEPTH:
        raise DecodeError(f"messages nested deeper than {MAX_DEPTH}")
    by_number = msg._by_number
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        f = by_number.get(number)
        if f is None or (wire != f.wire and not (f.packable and wire == _LEN)):
            pos = _skip(buf, pos, end, wire, number, depth)
            continue
        if f.label == MAP:
            stop, pos = _read_len(buf, pos, end)
            k, v = _map_entry(f, buf, pos, stop, depth + 1)
            getattr(msg, f.name)[k] = v
            pos = stop
        elif f.kind == MESSAGE:
            stop, pos = _read_len(buf, pos, end)
            if f.label == REPEATED:
                sub = f.ref()
                getattr(msg, f.name).append(sub)
            else:
                sub = getattr(msg, f.name)
                if sub is None:   # a second occurrence merges into the first
                    sub = f.ref()
                    setattr(msg, f.name, sub)
            decode_into(sub, buf, pos, stop, depth + 1)
            pos = stop
        elif f.label == REPEATED:
            items = getattr(msg, f.name)
            if wire == _LEN and f.wire != _LEN:
                stop, pos = _read_len(buf, pos, end)
                while pos < stop:
                    v, pos = _scalar(f.kind, buf, pos, stop)
                    items.append(v)
            else:
                v, pos = _scalar(f.kind, buf, pos, end)
                items.append(v)
        else:
            v, pos = _scalar(f.kind, buf, pos, end)
            setattr(msg, f.name, v)


def _map_entry(f: Field, buf: bytes, pos: int, end: int, depth: int) -> Tuple[Any, Any]:
    kf, vf = f.ref
    k, v = kf.default(), vf.default()
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        field = kf if number == 1 else vf if number == 2 else None
        if field is None or wire != field.wire:
            pos = _skip(buf, pos, end, wire, number, depth)
        elif field.kind == MESSAGE:
            stop, pos = _read_len(buf, pos, end)
            if v is None:
                v = vf.ref()
            decode_into(v, buf, pos, stop, depth + 1)
            pos = stop
        elif number == 1:
            k, pos = _scalar(kf.kind, buf, pos, end)
        else:
            v, pos = _scalar(vf.kind, buf, pos, end)
    if v is None:
        v = vf.ref()
    return k, v
