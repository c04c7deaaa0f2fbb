"""pidsafe.shim: containerd-shim-pidsafe-v1, a containerd runtime v2 shim.

This face exports the shim's wire layer (see "Layout" in README.md):

- ``messages``: the containerd 1.6 messages, generated from the vendored
  protos (``messages.CreateTaskRequest``, ``messages.TaskService.Create``);
  each has keyword construction, ``encode()`` and ``decode(data)``.
- :class:`Server`, :class:`Context`: a ttrpc server (requests concurrent).
- :class:`Client`: a ttrpc client; :class:`Publisher`: containerd's events.
- :class:`Code`, ``RpcError``, ``ConnectionClosedError``, ``DecodeError``.

Names load on first use: the shim's ``delete`` action needs the messages,
not the server's sockets and threads.
"""

from .. import _lazy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..errors import ConnectionClosedError, DecodeError, RpcError
    from . import _messages as messages
    from ._client import Client
    from ._codec import Message
    from ._method import Method
    from ._publisher import NAMESPACE_HEADER, Publisher, validate_identifier, validate_topic
    from ._connection import Context
    from ._server import Server
    from ._ttrpc import MAX_DATA, Code

_EXPORTS = {
    "Client": "._client",
    "Code": "._ttrpc",
    "ConnectionClosedError": "..errors",
    "Context": "._connection",
    "DecodeError": "..errors",
    "MAX_DATA": "._ttrpc",
    "Message": "._codec",
    "Method": "._method",
    "NAMESPACE_HEADER": "._publisher",
    "Publisher": "._publisher",
    "RpcError": "..errors",
    "Server": "._server",
    "validate_identifier": "._publisher",
    "validate_topic": "._publisher",
}

_getattr, _dir = _lazy.exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    if name == "messages":     # the generated module itself
        from . import _messages
        globals()["messages"] = _messages
        return _messages
    return _getattr(name)


def __dir__() -> "list[str]":
    return sorted({*_dir(), "messages"})


__all__ = [
    "Client",
    "Code",
    "ConnectionClosedError",
    "Context",
    "DecodeError",
    "MAX_DATA",
    "Message",
    "Method",
    "NAMESPACE_HEADER",
    "Publisher",
    "RpcError",
    "Server",
    "messages",
    "validate_identifier",
    "validate_topic",
]
