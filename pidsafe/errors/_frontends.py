"""Errors of the front ends: the command lines and the containerd shim's wire."""

from __future__ import annotations

from ._base import Error, at_face

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Tuple


# --- command lines ---------------------------------------------------------------

class UsageError(Error, ValueError):
    """A command line pidsafe's CLIs refuse (``pidsafe-runc`` exits 1 with it)."""


# --- the containerd shim (pidsafe.shim) ------------------------------------------

class DecodeError(Error, ValueError):
    """Bytes that are not a valid protobuf encoding of the expected message."""


#: gRPC status code names by number (google.golang.org/grpc/codes).
_RPC_CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
                   "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
                   "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
                   "Internal", "Unavailable", "DataLoss", "Unauthenticated")


class RpcError(Error, RuntimeError):
    """A ttrpc call's error status: a gRPC code and a message.

    A ttrpc handler raises it to answer with that status (containerd maps
    NotFound 5, AlreadyExists 6, FailedPrecondition 9, InvalidArgument 3,
    Unimplemented 12, Unavailable 14 to its own errors; anything else is
    Unknown to it); a ttrpc client raises it when the server answers one.
    ``pidsafe.shim.Code`` names the codes.

    Attributes:
        code: the gRPC status code (never 0).
        message: the status message, as sent.
    """

    def __init__(self, code: int, message: str) -> None:
        name = _RPC_CODE_NAMES[code] if 0 <= code < len(_RPC_CODE_NAMES) else f"Code({code})"
        super().__init__(f"{name}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.code, self.message)


class ConnectionClosedError(Error, ConnectionError):
    """A ttrpc connection is closed (ttrpc's ``ErrClosed``).

    The peer hung up or reset it, or this side closed it; a call in flight
    on it, and every later call, fails with this.
    """

    def __init__(self, message: str = "ttrpc: closed") -> None:
        super().__init__(message)


at_face(UsageError, DecodeError, RpcError, ConnectionClosedError)
