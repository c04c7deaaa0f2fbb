"""The base of every object that owns something: an fd, a child, a lock.

Whoever holds such an object must give the thing back: by calling
``close()`` or leaving a ``with`` block (:class:`Closable`), or by the
object's own release call (a :class:`~pidsafe.StateFile`'s ``unlock()``).
An object dropped while it still owns something gives it back from
``__del__`` (which must neither block nor raise) and says so with a
``ResourceWarning``, as files do: with ``-W error`` (pidsafe's tests run
so) a leak fails loudly.

A leaf: it imports nothing of pidsafe, and ``warnings`` only to warn.
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Optional, Type

    from typing_extensions import Self


class Owned:
    """Dropped while owning something: released, and a ``ResourceWarning``.

    A subclass that can be dropped with something left defines
    :meth:`_release_dropped`.
    """

    __slots__ = ()

    def _release_dropped(self) -> Optional[str]:
        """From ``__del__``: release what is still owned, without blocking or raising.

        Returns:
            What to warn about, or ``None``: nothing was left to release.
        """
        return None

    def __del__(self) -> None:
        message = self._release_dropped()
        if message is not None:
            import warnings

            warnings.warn(message, ResourceWarning, stacklevel=2)


class Closable(Owned):
    """:class:`Owned`, given back by :meth:`close`; ``with`` closes it."""

    __slots__ = ()

    def close(self) -> None:
        """Give back what the object owns.  Idempotent."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()
