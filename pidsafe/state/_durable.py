"""Files replaced durably: never torn, never left half-written (invariant 7).

:func:`replace` writes a temp file beside the target, ``fsync``\\ s it,
``rename``\\ s it over the target and ``fsync``\\ s the directory: a reader
sees the old content or the new, never a mix, and a crash at any point
leaves one of the two.  The temp file of ``DIR/NAME`` is
``DIR/.NAME.<16 random hex digits>.tmp``, created ``O_EXCL`` (a name that
exists is never reused: another is drawn).  Names on disk are identities: a
name made of our pid and thread id collides for ever with the leftover of a
crashed writer whose pid was reused; a random one does not, and its fixed
length makes the name part exact, so :func:`remove_temps` of ``x.json``
never takes the temp files of ``x.json.json``.

Every function here waits only for the disk; call each inside one
``critical`` section (pidsafe/_sigsafe.py), as :class:`StateFile` does.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Optional

#: Random hex digits in a temp name (64 bits: a collision is a planted file).
_TOKEN_BYTES = 8
#: How many names replace() draws before it gives up (each taken by O_EXCL).
_TEMP_TRIES = 32


def replace(path: str, data: bytes, what: str) -> None:
    """Replace ``path`` with ``data``, atomically and durably.

    Args:
        path: the file to replace (its directory exists).
        data: its new content.
        what: what the file is, for the error message (``"state 'x'"``).

    Raises:
        OSError: creating, writing, syncing or renaming the temp file
            failed (ENOSPC, EIO, EMFILE ...); the old file is intact and no
            temp file is left.  A failure of the final directory fsync
            comes after the rename: the new content is in place.
    """
    root, name = os.path.split(path)
    fd = -1
    tmp: Optional[str] = None
    try:
        for _ in range(_TEMP_TRIES):
            candidate = os.path.join(root, f".{name}.{os.urandom(_TOKEN_BYTES).hex()}.tmp")
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600)
            except FileExistsError:
                continue  # planted, or astronomically unlucky: draw again
            tmp = candidate
            break
        else:
            raise OSError(errno.EEXIST, f"create a temp file for {what}: "
                          f"{_TEMP_TRIES} random names were all taken", root)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        fd, closing = -1, fd
        os.close(closing)
        os.rename(tmp, path)
        tmp = None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            unlink_if_there(tmp)
    fsync_dir(root)


def remove_temps(path: str) -> None:
    """Remove the temp files that crashed :func:`replace`\\ s of ``path`` left.

    Exactly this name's temp files: ``.NAME.`` + token + ``.tmp``, the token
    being 16 hex digits, or ``PID.TID`` as older versions wrote it (a
    leftover of a crash before an upgrade).  Neither form contains ``json``,
    so another state's names (``.x.json.json.<token>.tmp`` for id
    ``x.json``) cannot match.  Compiled here, not per object: only
    ``destroy()`` needs it.
    """
    root, name = os.path.split(path)
    prefix = f".{name}."
    for entry in os.listdir(root):
        if (entry.startswith(prefix) and entry.endswith(".tmp")
                and _is_temp_token(entry[len(prefix):-len(".tmp")])):
            unlink_if_there(os.path.join(root, entry))


def _is_temp_token(token: str) -> bool:
    """16 lowercase hex digits, or ``PID.TID`` (ASCII digits): a temp name's middle.

    String tests, not a regular expression: :mod:`re` (and the :mod:`enum`
    it imports) would be a sixth of pidsafe-runc ``delete``'s start-up.
    """
    if len(token) == 16:
        return all(c in "0123456789abcdef" for c in token)
    pid, dot, tid = token.partition(".")
    return bool(dot) and all(p.isascii() and p.isdigit() for p in (pid, tid))


def unlink_if_there(path: str) -> None:
    """Unlink ``path``; a file already gone is what we wanted."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # already gone: what we wanted


def read_file(path: str) -> bytes:
    """The whole content of ``path`` (opened read-only, close-on-exec)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: List[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a directory, so that a rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
