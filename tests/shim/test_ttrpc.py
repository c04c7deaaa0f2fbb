"""pidsafe.shim._ttrpc: the frame header, frame reads, status codes."""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Iterator, Tuple

import pytest

from pidsafe import errors
from pidsafe.errors import ConnectionClosedError
from pidsafe.shim import _ttrpc
from pidsafe.shim._ttrpc import MAX_DATA, Code, frame_bytes, read_frame


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        a.settimeout(30)
        yield a, b


def test_header_as_containerd_sends_it() -> None:
    # The runc shim's answer to Create, as seen on the wire from containerd 1.6.20.
    assert frame_bytes(1, _ttrpc.RESPONSE, bytes.fromhex("1203" "08e706")) == \
        bytes.fromhex("00000005" "00000001" "02" "00" "120308e706")
    assert frame_bytes(0xFFFFFFFF, 1, b"") == bytes.fromhex("00000000ffffffff0100")


def test_frame_bytes_refuses_more_than_the_limit() -> None:
    assert len(frame_bytes(1, 1, bytes(MAX_DATA))) == MAX_DATA + 10
    with pytest.raises(ValueError, match="exceeds the maximum"):
        frame_bytes(1, 1, bytes(MAX_DATA + 1))


def test_read_frames_in_a_stream(pair: Tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(frame_bytes(3, 1, b"abc") + frame_bytes(5, 7, b"") +
              struct.pack(">IIBB", 2, 9, 2, 0x81) + b"xy")
    frames = [read_frame(a) for _ in range(3)]
    assert [(f.stream_id, f.type, f.flags, f.data) for f in frames if f] == [
        (3, 1, 0, b"abc"), (5, 7, 0, b""), (9, 2, 0x81, b"xy")]
    b.shutdown(socket.SHUT_WR)
    assert read_frame(a) is None          # end of stream between frames


def test_read_frame_arriving_a_byte_at_a_time(pair: Tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    for byte in frame_bytes(1, 1, b"hello"):
        b.send(bytes([byte]))
    frame = read_frame(a)
    assert frame is not None and frame.data == b"hello"


@pytest.mark.parametrize("partial", [b"\x00\x00", frame_bytes(1, 1, b"abcdef")[:-2]])
def test_end_of_stream_inside_a_frame_is_closed(
        pair: Tuple[socket.socket, socket.socket], partial: bytes) -> None:
    a, b = pair
    b.sendall(partial)
    b.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosedError, match="inside a frame"):
        read_frame(a)


def test_oversized_frame_is_read_and_discarded(pair: Tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    big = MAX_DATA + 1
    b.sendall(struct.pack(">IIBB", big, 7, 1, 0))
    writer = threading.Thread(target=lambda: b.sendall(bytes(big) + frame_bytes(9, 1, b"next")))
    writer.start()
    frame = read_frame(a)
    assert frame is not None and (frame.stream_id, frame.length, frame.data) == (7, big, None)
    nxt = read_frame(a)                    # the stream stays in step
    writer.join()
    assert nxt is not None and (nxt.stream_id, nxt.data) == (9, b"next")
    assert _ttrpc.oversized_message(big) == \
        f"message length {big} exceed maximum message size of {MAX_DATA}"


def test_reset_is_closed(pair: Tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(b"unread")      # Linux: closing a Unix socket with unread data resets the peer
    b.close()
    with pytest.raises(ConnectionClosedError, match="reset"):
        read_frame(a)


def test_codes_match_the_grpc_names() -> None:
    names = errors._RPC_CODE_NAMES
    for attr, value in vars(Code).items():
        if attr.isupper():
            assert names[value].lower() == attr.replace("_", "").lower()
    assert str(errors.RpcError(Code.FAILED_PRECONDITION, "x")) == "FailedPrecondition: x"
    assert str(errors.RpcError(99, "x")) == "Code(99): x"


def test_unix_path() -> None:
    assert _ttrpc.unix_path("unix:///run/containerd/containerd.sock.ttrpc") == \
        "/run/containerd/containerd.sock.ttrpc"
    assert _ttrpc.unix_path("/x") == "/x"


def test_peer_credentials_are_ours(pair: Tuple[socket.socket, socket.socket]) -> None:
    assert _ttrpc.peer_credentials(pair[0]) == (os.getpid(), os.geteuid(), os.getegid())
