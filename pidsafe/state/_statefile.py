"""StateFile: container state that is never torn (DESIGN.md invariant 7).

The lesson of gVisor's "Fix container locking" (shared/seeds/001): one
object owns save, load, lock and destroy, and the lock lives where destroy
can take it.  Here that is ``ROOT/ID.lock``, beside ``ROOT/ID.json``.

- **Saving** writes a temp file in ``ROOT``, ``fsync``s it, ``rename``s it
  over ``ID.json`` and ``fsync``s ``ROOT``: a reader sees the old state or
  the new one, never a mix, and a crash at any point leaves one of the two.
- **Locking** is ``flock(LOCK_EX)`` on ``ID.lock``.  ``destroy()`` unlinks
  the lock file while holding it, so a process that was blocked on the old
  file must notice that it now holds a lock on a file nobody else can find:
  after every ``flock`` we check that the path still names the inode we
  locked and start over if not.  So the lock file is never unlinked while
  anyone can be using it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from types import TracebackType
from typing import Any, Dict, List, Optional, Type, Union
from ..errors import StateError

StrPath = Union[str, "os.PathLike[str]"]

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


class StateFile:
    """The state of one container under ``root``: save, load, lock, destroy.

    ``save()`` and ``destroy()`` need the lock (``with state.locked():``);
    ``load()`` takes a shared lock itself unless this object already holds
    the exclusive one.  One object is meant for one thread at a time; use
    one object per thread (they exclude each other through the lock file).
    """

    def __init__(self, root: StrPath, container_id: str) -> None:
        if not isinstance(container_id, str) or not _ID_RE.match(container_id):
            raise StateError(
                f"container id {container_id!r} is invalid: use 1-128 characters of "
                "[A-Za-z0-9_.-], starting with a letter or digit")
        self.root = os.fspath(root)
        self.id = container_id
        self.path = os.path.join(self.root, container_id + ".json")
        self.lock_path = os.path.join(self.root, container_id + ".lock")
        self._lock_fd = -1
        self._mode = 0

    # -- locking ------------------------------------------------------------

    def _acquire(self, mode: int, create: bool = True) -> bool:
        """Lock ``mode``; False if not ``create`` and there is no lock file."""
        if self._lock_fd >= 0:
            raise StateError(f"state {self.id!r} is already locked by this object")
        if create:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(self.lock_path, flags, 0o600)
            except FileNotFoundError:
                if create:
                    raise
                return False
            try:
                fcntl.flock(fd, mode)
                held = os.fstat(fd)
                try:
                    now = os.stat(self.lock_path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                self._lock_fd, self._mode = fd, mode
                return True
            # destroy() unlinked the file we waited on: that lock guards
            # nothing any more.  Take the lock of whatever is there now.
            os.close(fd)

    def lock(self) -> None:
        """Take the exclusive lock, waiting for other holders."""
        self._acquire(fcntl.LOCK_EX)

    def unlock(self) -> None:
        """Release the lock (closing the lock fd releases the flock)."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd < 0:
            raise StateError(f"state {self.id!r} is not locked")
        self._mode = 0
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

    def save(self, state: Dict[str, Any]) -> None:
        """Atomically replace the saved state with ``state`` (JSON).

        Raises:
            StateError: the lock is not held.
            TypeError, ValueError: ``state`` is not JSON-serialisable
                (nothing is written).
            OSError: writing, syncing or renaming failed; the old state is
                intact and no temp file is left.
        """
        self._require_lock("save")
        data = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        tmp = os.path.join(self.root, f".{self.id}.json.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(self.root)

    def load(self) -> Dict[str, Any]:
        """The saved state.

        Takes a shared lock for the read unless this object holds the lock
        (or nobody has ever locked this state: saves are atomic renames, so
        the read cannot be torn either way).

        Raises:
            FileNotFoundError: no state has been saved (or it was destroyed).
            StateError: the file is not a JSON object (never from a torn
                write: writes are atomic; only from outside meddling).
        """
        own = self._lock_fd < 0 and self._acquire(fcntl.LOCK_SH, create=False)
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        finally:
            if own:
                self.unlock()
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"state file {self.path} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise StateError(f"state file {self.path} holds {type(value).__name__}, not an object")
        return value

    def destroy(self) -> None:
        """Remove the state, the lock file and temp files of crashed saves.

        Call with the lock held; ``unlock()`` afterwards (the context manager
        does).  Waiters on the old lock file notice it is gone and lock the
        new one.  Idempotent: a missing state is not an error.
        """
        self._require_lock("destroy")
        # Temp files of saves that crashed between create and rename.
        prefix = f".{self.id}.json."
        stale = [n for n in os.listdir(self.root) if n.startswith(prefix) and n.endswith(".tmp")]
        for path in [os.path.join(self.root, n) for n in stale] + [self.path, self.lock_path]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        _fsync_dir(self.root)

    @staticmethod
    def list(root: StrPath) -> List[str]:
        """The ids of the containers with a saved state under ``root``."""
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
        ids = [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]
        return sorted(i for i in ids if _ID_RE.match(i))

    def __repr__(self) -> str:
        return f"<pidsafe.StateFile {self.path}{' locked' if self.is_locked else ''}>"

    def __del__(self) -> None:
        fd = getattr(self, "_lock_fd", -1)
        if fd >= 0:
            self._lock_fd = -1
            os.close(fd)
            import warnings

            warnings.warn(f"StateFile {self.id!r} dropped while locked", ResourceWarning,
                          stacklevel=2)


class _Locked:
    def __init__(self, state: StateFile) -> None:
        self._state = state

    def __enter__(self) -> StateFile:
        self._state.lock()
        return self._state

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._state.unlock()


def _fsync_dir(path: str) -> None:
    """fsync a directory, so that a rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
