"""Helpers of the well-known types ``google.protobuf.Any`` and ``Timestamp``.

The generated ``Any`` and ``Timestamp`` classes inherit these.
containerd (typeurl v1.0.2, types.go) names a packed message by its bare
full name, ``containerd.events.TaskExit``, not ``type.googleapis.com/...``;
``ctr events`` and CRI look events up by that name.
"""

from __future__ import annotations

import time

from ..errors import DecodeError
from ._codec import message_class

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Type, TypeVar

    from ._codec import Message

    _A = TypeVar("_A", bound="AnyMixin")
    _T = TypeVar("_T", bound="TimestampMixin")
    _M = TypeVar("_M", bound=Message)


class AnyMixin:
    """``google.protobuf.Any``: a message packed with its type's name."""

    __slots__ = ()
    type_url: str
    value: bytes

    @classmethod
    def pack(cls: Type[_A], msg: Message) -> _A:
        """``msg`` packed under its bare full name, as containerd packs events."""
        packed = cls()
        packed.type_url = msg.FULL_NAME
        packed.value = msg.encode()
        return packed

    @property
    def type_name(self) -> str:
        """The full message name: ``type_url`` after its last ``/``, if any."""
        return self.type_url.rpartition("/")[2]

    def unpack(self) -> Message:
        """The packed message, as the generated class its type names.

        Raises:
            pidsafe.errors.DecodeError: the type is not one of the vendored
                protos' messages, or the value does not decode as it.
        """
        try:
            cls = message_class(self.type_name)
        except KeyError:
            raise DecodeError(f"Any holds an unknown message type {self.type_url!r}") from None
        return cls.decode(self.value)

    def unpack_as(self, cls: Type[_M]) -> _M:
        """The packed message, which must be a ``cls``.

        Raises:
            pidsafe.errors.DecodeError: it holds another type, or its value
                does not decode.
        """
        if self.type_name != cls.FULL_NAME:
            raise DecodeError(f"Any holds {self.type_url!r}, not {cls.FULL_NAME}")
        return cls.decode(self.value)


class TimestampMixin:
    """``google.protobuf.Timestamp``: seconds and nanoseconds since the epoch (UTC)."""

    __slots__ = ()
    seconds: int
    nanos: int

    @classmethod
    def from_ns(cls: Type[_T], ns: int) -> _T:
        """The Timestamp of ``ns`` nanoseconds since the epoch."""
        ts = cls()
        ts.seconds, ts.nanos = divmod(ns, 1_000_000_000)
        return ts

    @classmethod
    def now(cls: Type[_T]) -> _T:
        """The current time (``time.time_ns()``)."""
        return cls.from_ns(time.time_ns())

    def to_ns(self) -> int:
        """Nanoseconds since the epoch."""
        return self.seconds * 1_000_000_000 + self.nanos
