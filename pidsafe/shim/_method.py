"""Service descriptors: which messages a ttrpc method takes and returns.

The generated module describes each proto ``service`` as a class of
:class:`Method` attributes (``TaskService.Create``); a ttrpc server
registers a handler for a Method and decodes its request with it, a client
calls one and decodes its response with it.
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import costs ms at each shim start
if TYPE_CHECKING:
    from typing import Generic, Type, TypeVar

    from ._codec import Message

    Req = TypeVar("Req", bound=Message, covariant=True)
    Resp = TypeVar("Resp", bound=Message, covariant=True)

    class _Generic(Generic[Req, Resp]):
        pass
else:
    class _Generic:
        """``Method[Req, Resp]`` for mypy; one plain class at run time."""

        def __class_getitem__(cls, params: object) -> type:
            return cls

    Req = Resp = None


class Method(_Generic[Req, Resp]):
    """One rpc of a service.

    Attributes:
        service: the service's full proto name (``containerd.task.v2.Task``),
            as ttrpc sends it in ``Request.service``.
        name: the rpc's name (``Create``), ttrpc's ``Request.method``.
        request: the message class it takes.
        response: the message class it returns.
    """

    __slots__ = ("service", "name", "request", "response")

    def __init__(self, service: str, name: str, request: Type[Req],
                 response: Type[Resp]) -> None:
        self.service = service
        self.name = name
        self.request = request
        self.response = response

    @property
    def full_name(self) -> str:
        """``/service/method``, as ttrpc and gRPC spell a method."""
        return f"/{self.service}/{self.name}"

    def __repr__(self) -> str:
        return f"<Method {self.full_name}>"
