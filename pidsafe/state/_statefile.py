"""StateFile: container state that is never torn (invariant 7).

The lesson of gVisor's "Fix container locking": one
object owns save, load, lock and destroy, and the lock lives where destroy
can take it.  Here that is ``ROOT/ID.lock``, beside ``ROOT/ID.json``.

- **Saving** replaces ``ID.json`` durably (``_durable``: temp file,
  ``fsync``, ``rename``, directory ``fsync``): a reader sees the old state
  or the new one, never a mix, and a crash at any point leaves one of the
  two.
- **Locking** is ``flock(LOCK_EX)`` on ``ID.lock``, opened read-only (a
  ``load()`` needs no write permission anywhere).  A lock is valid only
  while the path names the inode it is on: after every ``flock`` we check
  that and start over if not.
- **Destroying** removes the state and the temp files of crashed saves at
  once, but the lock file only at ``unlock()``, while still holding it, right
  before the lock is released.  Until then the path keeps naming the
  locked inode, so a new locker blocks on it like anybody else; had
  ``destroy()`` unlinked it, a new locker would create a fresh lock file
  and get in while the destroyer still held its lock.  After the unlink
  the destroyer does nothing but close; lockers that were blocked on the
  old inode find it gone from the path and lock the new one.  Two holders
  of a valid lock can never coexist.

Signal handlers that raise (pidsafe/_sigsafe.py): ``save()``, ``destroy()``,
the read of ``load()`` and every release of the lock are each one
``critical`` section (they wait only for the disk), so a handler's
exception comes out when the state is wholly old or wholly new, with no
temp file and no fd left.  The lock fd belongs to the object from the
moment it is open; the ``flock`` wait runs outside any section, so Ctrl-C
interrupts it, and the fd is then released.  One residual window: a
handler raising as ``with state.locked():`` calls ``__exit__`` (before any
of our code runs) leaves the lock held by the object, which still releases
it on ``unlock()`` or when dropped.
"""

from __future__ import annotations

import errno
import fcntl
import os

from .. import _lite
from .._owned import Owned
from .._sigsafe import critical, interruptibly
from ..errors import StateError
from . import _durable

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Dict, List, Optional, Type, Union

    StrPath = Union[str, "os.PathLike[str]"]

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")


def _valid_id(name: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9_.-]{0,127}``, checked without compiling a regex.

    (Compiling one costs about a millisecond at every pidsafe-runc start.)
    """
    return (0 < len(name) <= 128 and name[0] in _ALNUM
            and all(c in _ID_CHARS for c in name))


class StateFile(Owned):
    """The state of one container under ``root``: save, load, lock, destroy.

    ``save()`` and ``destroy()`` need the lock (``with state.locked():``);
    ``load()`` takes a shared lock itself unless this object already holds
    the exclusive one.  One object is meant for one thread at a time; use
    one object per thread (they exclude each other through the lock file).
    """

    def __init__(self, root: StrPath, container_id: str) -> None:
        if not isinstance(container_id, str) or not _valid_id(container_id):
            raise StateError(
                f"container id {container_id!r} is invalid: use 1-128 characters of "
                "[A-Za-z0-9_.-], starting with a letter or digit")
        self.root = os.fspath(root)
        self.id = container_id
        self.path = os.path.join(self.root, container_id + ".json")
        self.lock_path = os.path.join(self.root, container_id + ".lock")
        self._lock_fd = -1
        self._mode = 0
        #: destroy() ran under the current lock: unlock() removes the lock file.
        self._destroyed = False

    # -- locking ------------------------------------------------------------

    def _acquire(self, mode: int, *, create: bool = True, blocking: bool = True) -> bool:
        """Take a valid lock of ``mode``.

        Returns False if not ``create`` and there is no lock file, or if not
        ``blocking`` and another holder has it.  The fd belongs to this
        object from the moment it is open (``_mode`` 0 until it is locked),
        so if anything here raises (a handler interrupting the wait, among
        others) the caller releases it with :meth:`_release`.
        """
        if self._lock_fd >= 0:
            raise StateError(f"state {self.id!r} is already locked by this object")
        if create:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
        # Read-only: flock() needs no write access, and neither may load().
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        while True:
            with critical:
                try:
                    fd = os.open(self.lock_path, flags, 0o600)
                except FileNotFoundError:
                    if create:
                        raise
                    return False
                self._lock_fd, self._mode, self._destroyed = fd, 0, False
            try:
                # May wait for ever: outside any critical section (or at
                # a safe point of an interruptible one), so a handler
                # (Ctrl-C) can interrupt it.
                with interruptibly:
                    fcntl.flock(fd, mode if blocking else mode | fcntl.LOCK_NB)
            except BlockingIOError:
                self._release()
                return False
            if _names(fd, self.lock_path):
                self._mode = mode
                return True
            # The holder that destroyed the state unlinked the file we
            # waited on (in unlock(), right before releasing it): that lock
            # guards nothing any more.  Take the lock of whatever is there
            # now.
            self._release()

    def lock(self, *, blocking: bool = True) -> bool:
        """Take the exclusive lock, waiting for other holders.

        Args:
            blocking: if False, do not wait: return False at once when
                someone else holds the lock.

        Returns:
            True once the lock is held (always, when ``blocking``).

        Raises:
            StateError: this object already holds the lock.
            PermissionError, OSError: the lock file cannot be created or
                opened (``ROOT`` unwritable, EMFILE ...).
        """
        if self._lock_fd >= 0:
            raise StateError(f"state {self.id!r} is already locked by this object")
        try:
            return self._acquire(fcntl.LOCK_EX, blocking=blocking)
        except BaseException:
            # Interrupted while waiting, or failed: what was opened goes.
            if self._lock_fd >= 0:
                self._release()
            raise

    def unlock(self) -> None:
        """Release the lock (closing the lock fd releases the flock).

        After :meth:`destroy` the lock file is unlinked first, while still
        held (see the module docstring).

        Raises:
            StateError: the lock is not held.
            OSError: the lock file of a destroyed state could not be
                removed; the lock is released all the same.
        """
        if self._lock_fd < 0:
            raise StateError(f"state {self.id!r} is not locked")
        self._release()

    def _release(self) -> None:
        """Close the lock fd (if destroyed, unlink the lock file first)."""
        with critical:
            fd, self._lock_fd = self._lock_fd, -1
            destroyed = self._destroyed and self._mode == fcntl.LOCK_EX
            self._mode, self._destroyed = 0, False
            try:
                # Only a valid holder removes the lock file, and nobody else
                # can replace it while we hold it; check anyway, by identity.
                if destroyed and _names(fd, self.lock_path):
                    try:
                        os.unlink(self.lock_path)
                    except FileNotFoundError:
                        pass  # removed behind our back: what we wanted
                    except OSError as exc:
                        err = exc.errno or errno.EIO
                        raise OSError(err, f"remove the lock file of destroyed state {self.id!r}"
                                      f": {os.strerror(err)}", self.lock_path) from None
            finally:
                os.close(fd)

    @property
    def is_locked(self) -> bool:
        """Whether this object holds the exclusive lock."""
        return self._lock_fd >= 0 and self._mode == fcntl.LOCK_EX

    def locked(self) -> "_Locked":
        """``with state.locked():`` holds the exclusive lock for the block."""
        return _Locked(self)

    def _require_lock(self, what: str) -> None:
        if not self.is_locked:
            raise StateError(f"{what} of state {self.id!r} needs the lock: "
                             "use `with state.locked():`")

    # -- data -----------------------------------------------------------------

    def exists(self) -> bool:
        """Whether a saved state exists."""
        return os.path.exists(self.path)

    def save(self, state: Dict[str, Any], *, encoded: Optional[Dict[str, str]] = None
             ) -> None:
        """Atomically replace the saved state with ``state`` (JSON).

        ``encoded``: keys of ``state`` whose values are given as their JSON
        already (compact, keys sorted): a caller that saves a large value
        unchanged again and again encodes it once.  The file is the same.

        Raises:
            StateError: the lock is not held.
            TypeError, ValueError: ``state`` is not JSON-serialisable
                (nothing is written).
            OSError: creating, writing, syncing or renaming the temp file
                failed (ENOSPC, EIO, EMFILE ...); the old state is intact
                and no temp file is left.  A failure of the final directory
                fsync comes after the rename: the new state is in place.
        """
        self._require_lock("save")
        if encoded:
            data = _lite.dumps_sorted({k: v for k, v in state.items() if k not in encoded},
                                      encoded).encode()
        else:
            data = _lite.dumps(state, sort_keys=True, compact=True).encode()
        # One critical section for the whole save: it waits only for the
        # disk, and a handler's exception then comes out after the state is
        # wholly old or wholly new, the temp file gone, every fd closed.
        with critical:
            _durable.replace(self.path, data, f"state {self.id!r}")

    def load(self) -> Dict[str, Any]:
        """The saved state.

        Takes a shared lock for the read unless this object holds the lock
        (or nobody has ever locked this state: saves are atomic renames, so
        the read cannot be torn either way).  Needs read permission only.

        Raises:
            FileNotFoundError: no state has been saved (or it was destroyed).
            StateError: the file is not a JSON object (never from a torn
                write: writes are atomic; only from outside meddling).
            PermissionError, OSError: the state or its lock file cannot be
                opened or read.
        """
        held = self._lock_fd >= 0
        try:
            if not held:
                self._acquire(fcntl.LOCK_SH, create=False)
            with critical:
                try:
                    raw = _durable.read_file(self.path)
                finally:
                    if not held and self._lock_fd >= 0:
                        self._release()
        except BaseException:
            # Interrupted while waiting for the shared lock, or failed.
            if not held and self._lock_fd >= 0:
                self._release()
            raise
        try:
            value = _lite.loads(raw)
        except ValueError as exc:
            raise StateError(f"state file {self.path} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise StateError(f"state file {self.path} holds {type(value).__name__}, not an object")
        return value

    def destroy(self) -> None:
        """Remove the state and the temp files of crashed saves of this id.

        Call with the lock held; the lock file goes at ``unlock()`` (the
        context manager does it), so nobody else can lock this id before
        then.  Idempotent: a missing state is not an error.

        Raises:
            StateError: the lock is not held.
            OSError: listing ``ROOT`` or an unlink failed; the state is
                then still there (or already gone), never half-removed.
        """
        self._require_lock("destroy")
        with critical:
            # Temp files of saves that crashed between create and rename.
            _durable.remove_temps(self.path)
            _durable.unlink_if_there(self.path)
            self._destroyed = True
            _durable.fsync_dir(self.root)

    @staticmethod
    def list(root: StrPath) -> List[str]:
        """The ids of the containers with a saved state under ``root``."""
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
        ids = [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]
        return sorted(i for i in ids if _valid_id(i))

    def __repr__(self) -> str:
        return f"<pidsafe.StateFile {self.path}{' locked' if self.is_locked else ''}>"

    def _release_dropped(self) -> Optional[str]:
        fd = getattr(self, "_lock_fd", -1)
        if fd < 0:
            return None
        self._lock_fd = -1
        os.close(fd)
        return f"StateFile {self.id!r} dropped while locked"


class _Locked:
    def __init__(self, state: StateFile) -> None:
        self._state = state

    def __enter__(self) -> StateFile:
        self._state.lock()
        return self._state

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._state.unlock()


def _names(fd: int, path: str) -> bool:
    """Whether ``path`` names the inode open as ``fd`` right now."""
    held = os.fstat(fd)
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
