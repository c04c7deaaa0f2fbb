"""pidsafe-init's op codes: Python's copy matches csrc/init/protocol.h."""

from __future__ import annotations

import pathlib
import re

from pidsafe.container import _protocol

HEADER = pathlib.Path(__file__).resolve().parents[2] / "csrc" / "init" / "protocol.h"


def test_every_op_and_stage_matches_the_header() -> None:
    defines = dict(re.findall(r"#define PSI_((?:OP|STAGE|KIND|RECORD)_\w+)\s+(\d+)",
                              HEADER.read_text()))
    assert defines, "no op codes found in protocol.h"
    for name, value in defines.items():
        if name == "OP_MAX":
            assert max(v for k, v in vars(_protocol).items() if k.startswith("OP_")
                       and isinstance(v, int)) == int(value)
            continue
        assert getattr(_protocol, name) == int(value), name


def test_every_op_has_a_name_for_error_messages() -> None:
    ops = [v for k, v in vars(_protocol).items() if k.startswith(("OP_", "STAGE_"))
           and isinstance(v, int) and k not in ("OP_END", "OP_NAMES")]
    assert all(op in _protocol.OP_NAMES for op in ops)


def test_encoding_layout() -> None:
    import struct

    data = _protocol.Op(_protocol.OP_RLIMIT, (7, -1, b"ab", [1, 2])).encode()
    assert struct.unpack_from("=II", data) == (_protocol.OP_RLIMIT, 4)
    pos = 8
    seen = []
    for _ in range(4):
        (n,) = struct.unpack_from("=I", data, pos)
        seen.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    assert pos == len(data)
    assert struct.unpack("=q", seen[0]) == (7,) and struct.unpack("=q", seen[1]) == (-1,)
    assert seen[2] == b"ab" and struct.unpack("=qq", seen[3]) == (1, 2)
    stream = _protocol.encode([])
    assert stream == b"PSI1" + struct.pack("=II", _protocol.OP_END, 0)
