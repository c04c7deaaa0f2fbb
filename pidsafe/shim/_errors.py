"""pidsafe's errors as the gRPC codes containerd acts on (errdefs/grpc.go).

containerd maps NotFound, AlreadyExists, FailedPrecondition,
InvalidArgument, Unimplemented and Unavailable to its own errors and keeps
the message of anything else as Unknown.  A task method
raises :class:`pidsafe.errors.RpcError`; :func:`rpc_error` turns the
library's exceptions into one.
"""

from __future__ import annotations

from ..errors import (ConfigError, ContainerLookupError, ContainerStateError, Error,
                      IDMapError, InvalidMountError, RpcError)
from ._ttrpc import Code


def not_found(message: str) -> RpcError:
    return RpcError(Code.NOT_FOUND, message)


def already_exists(message: str) -> RpcError:
    return RpcError(Code.ALREADY_EXISTS, message)


def failed_precondition(message: str) -> RpcError:
    return RpcError(Code.FAILED_PRECONDITION, message)


def invalid_argument(message: str) -> RpcError:
    return RpcError(Code.INVALID_ARGUMENT, message)


def unimplemented(message: str) -> RpcError:
    return RpcError(Code.UNIMPLEMENTED, message)


def rpc_error(exc: BaseException, doing: str) -> BaseException:
    """The status to answer for ``exc``, raised while ``doing`` (e.g. "create").

    A config or mount the library refuses is InvalidArgument (the message
    names the JSON path or the mount); a container in the wrong state is
    FailedPrecondition; an unknown one NotFound; any other pidsafe or OS
    error is Unknown with its text.  Anything else (a bug) is returned as
    it is: the ttrpc server answers Unknown and logs it.
    """
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, (ConfigError, InvalidMountError, IDMapError)):
        return RpcError(Code.INVALID_ARGUMENT, f"{doing}: {exc}")
    if isinstance(exc, ContainerStateError):
        return RpcError(Code.FAILED_PRECONDITION, f"{doing}: {exc}")
    if isinstance(exc, ContainerLookupError):
        return RpcError(Code.NOT_FOUND, f"{doing}: {exc}")
    if isinstance(exc, (Error, OSError)):
        return RpcError(Code.UNKNOWN, f"{doing}: {exc}")
    return exc
