"""pidsafe-init's protocol: the header's values in Python, and an op round trip.

The op codes, stages and records reach Python from csrc/shared/init_protocol.h
through cffi (pidsafe._sys.psi); these tests run a real pidsafe-init on
streams Python encoded and check what it reports back.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any, List, Sequence, Tuple

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.container.init import _protocol
from pidsafe.container.init._protocol import Op, StatusRecord, nul_list

#: Ops that take no argument: each would act, so the dispatch test skips them.
NO_ARGS = frozenset({_protocol.OP_SETID_ROOT, _protocol.OP_PIVOT, _protocol.OP_ROOT_READONLY,
                     _protocol.OP_NO_NEW_PRIVS, _protocol.OP_CONSOLE,
                     _protocol.OP_TERMINAL_STDIO, _protocol.OP_LOOPBACK_UP,
                     _protocol.OP_CHROOT})


def op_codes() -> List[int]:
    return sorted(v for k, v in vars(_protocol).items()
                  if k.startswith("OP_") and isinstance(v, int) and k not in ("OP_END", "OP_MAX"))


def run_init(ops: Sequence[Op], **spawn_kw: Any) -> Tuple[List[StatusRecord], bytes, int]:
    """Run pidsafe-init as a plain child on ``ops``: its records, its output, its status."""
    init = _sys.program("pidsafe-init")
    ops_r, ops_w = os.pipe2(os.O_CLOEXEC)
    st_r, st_w = os.pipe2(os.O_CLOEXEC)
    try:
        with pidsafe.spawn([init.path, str(ops_r), str(st_w)], pass_fds=(ops_r, st_w),
                           stdout=pidsafe.PIPE, **spawn_kw) as p:
            os.close(ops_r)
            os.close(st_w)
            ops_r = st_w = -1
            os.write(ops_w, _protocol.encode(ops))
            os.close(ops_w)
            ops_w = -1
            records = []
            while (rec := _protocol.read_record(st_r)) is not None:
                records.append(rec)
            assert p.stdout is not None
            out = p.stdout.read()
            return records, out, p.wait()
    finally:
        for fd in (ops_r, ops_w, st_r, st_w):
            if fd >= 0:
                os.close(fd)


def test_an_op_stream_round_trips_through_pidsafe_init() -> None:
    ops = [Op(_protocol.OP_CHDIR, ("/",)), Op(_protocol.OP_UNSHARE, (0,)),
           Op(_protocol.OP_EXEC_PATH, ("/bin/sh",)),
           Op(_protocol.OP_EXEC, (nul_list(["sh", "-c", "pwd; echo $X"]), nul_list(["X=psi"])))]
    records, out, status = run_init(ops)
    assert records == [StatusRecord(_protocol.RECORD_READY, -1, 0, 0)]
    assert (out, status) == (b"/\npsi\n", 0)


def test_a_failing_op_is_reported_with_its_index_and_code() -> None:
    ops = [Op(_protocol.OP_CHDIR, ("/",)), Op(_protocol.OP_UNSHARE, (0,)),
           Op(_protocol.OP_CHDIR, ("/nonexistent/pidsafe-test",)),
           Op(_protocol.OP_EXEC, (nul_list(["true"]), b""))]
    records, out, status = run_init(ops)
    assert records == [StatusRecord(_protocol.RECORD_ERROR, 2, _protocol.OP_CHDIR, errno.ENOENT)]
    assert (out, status) == (b"", 127)


def test_a_stream_without_exec_is_a_protocol_error() -> None:
    records, _, status = run_init([Op(_protocol.OP_CHDIR, ("/",))])
    assert records == [StatusRecord(_protocol.RECORD_ERROR, -1, _protocol.STAGE_PROTOCOL,
                                    errno.EINVAL)]
    assert status == 127


@pytest.mark.root
def test_every_op_code_is_one_pidsafe_init_runs() -> None:
    # Each op that takes arguments, sent without them, fails as that op
    # (EINVAL from its argument check), never as an unknown one
    # (STAGE_PROTOCOL).  In a user and mount namespace of its own, so that
    # even a mistake acts on nothing of the host's.
    ns = pidsafe.Namespace.NEWNS | pidsafe.Namespace.NEWNET | pidsafe.Namespace.NEWUTS
    codes = [c for c in op_codes() if c not in NO_ARGS]
    assert _protocol.OP_PRESERVE_FDS in codes and _protocol.OP_SECCOMP in codes
    for code in codes:
        records, _, status = run_init([Op(code)], uidmap="0:0:65536", gidmap="0:0:65536",
                                      namespaces=ns)
        assert records == [StatusRecord(_protocol.RECORD_ERROR, 0, code, errno.EINVAL)], code
        assert status == 127


def test_op_max_is_the_largest_op() -> None:
    assert max(op_codes()) == _protocol.OP_MAX


def test_every_op_has_a_name_for_error_messages() -> None:
    ops = [v for k, v in vars(_protocol).items() if k.startswith(("OP_", "STAGE_"))
           and isinstance(v, int) and k not in ("OP_END", "OP_NAMES", "OP_MAX")]
    assert all(op in _protocol.OP_NAMES for op in ops)


def test_a_short_record_is_eof() -> None:
    assert _protocol.decode_record(b"") is None
    assert _protocol.decode_record(b"\0" * (_protocol.RECORD_SIZE - 1)) is None
    data = struct.pack("=iiii", _protocol.RECORD_ERROR, 3, _protocol.OP_MASK, errno.EPERM)
    assert _protocol.decode_record(data) == StatusRecord(_protocol.RECORD_ERROR, 3,
                                                         _protocol.OP_MASK, errno.EPERM)


def test_encoding_layout() -> None:
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


def test_a_missing_pidsafe_init_is_unsupported(tmp_path: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe._sys import _libexec
    from pidsafe.container.init._start import init_program

    assert init_program() == _sys.program("pidsafe-init")
    monkeypatch.setattr(_libexec, "LIBEXEC", str(tmp_path))
    monkeypatch.setattr(_libexec, "_found", {})
    with pytest.raises(pidsafe.UnsupportedError) as info:
        init_program()
    assert info.value.feature == "pidsafe_init" and info.value.errno == errno.ENOENT
    assert f"{tmp_path}/pidsafe-init is missing: reinstall pidsafe" in str(info.value)
