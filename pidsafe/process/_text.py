"""Text mode for a child's pipes: ``text=``, ``encoding=``, ``errors=`` as ``Popen`` has them.

What ``subprocess.Popen`` does, and so what :func:`pidsafe.spawn` does:

* text mode is on when any of ``text``, ``universal_newlines`` (its old
  name), ``encoding`` or ``errors`` is true; ``text`` and
  ``universal_newlines`` must not disagree;
* the encoding defaults to the locale's (UTF-8 in UTF-8 mode), with an
  ``EncodingWarning`` under ``-X warn_default_encoding``;
* each pipe becomes an ``io.TextIOWrapper`` over the binary one: ``stdin``
  with ``write_through=True``, and line-buffered when ``bufsize=1`` (the
  binary layer then keeps its default buffer size); ``stdout`` and
  ``stderr`` with universal newlines (``"\\r\\n"`` and ``"\\r"`` read as
  ``"\\n"``);
* ``communicate()`` takes ``str`` input, encodes it with stdin's encoding
  and errors, and decodes each output the same way, then translates
  newlines (``Communication``).

Unlike ``Popen``, the encoding and the error handler are looked up before
the child exists: a bad one raises ``LookupError`` with nothing started.
With text mode off, none of this runs: spawn() checks one ``None``.
"""

from __future__ import annotations

import codecs
import io
import sys

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import IO, Any, List, Optional, Sequence, Tuple


class TextMode:
    """How a spawn's pipes are wrapped: encoding, error handler, line buffering."""

    __slots__ = ("encoding", "errors", "line_buffering")

    def __init__(self, encoding: str, errors: Optional[str], line_buffering: bool) -> None:
        self.encoding = encoding
        self.errors = errors
        self.line_buffering = line_buffering


def _default_encoding() -> str:
    """The encoding ``Popen`` uses when text mode is on and none is given."""
    if sys.flags.warn_default_encoding:
        import warnings

        # spawn() -> text_mode() -> here: the warning points at spawn's caller
        # (or run()'s, one frame further, which is close enough).
        warnings.warn("'encoding' argument not specified.",
                      EncodingWarning, stacklevel=4)
    if sys.flags.utf8_mode:
        return "utf-8"
    import locale

    getencoding = getattr(locale, "getencoding", None)   # 3.11
    if getencoding is not None:
        return str(getencoding())
    return locale.getpreferredencoding(False)   # pragma: no cover - 3.10


def text_mode(text: Optional[bool], universal_newlines: Optional[bool],
              encoding: Optional[str], errors: Optional[str],
              bufsize: int) -> Tuple[Optional[TextMode], int]:
    """Spawn's text arguments, checked: ``(mode or None, bufsize of the binary pipes)``.

    Raises:
        ValueError: ``text`` and ``universal_newlines`` disagree.
        TypeError: ``encoding`` or ``errors`` is not a str.
        LookupError: no such encoding, or no such error handler.
    """
    if (text is not None and universal_newlines is not None
            and bool(text) != bool(universal_newlines)):
        raise ValueError("Cannot disambiguate when both text and universal_newlines are "
                         "supplied but different. Pass one or the other.")
    if not (encoding or errors or text or universal_newlines):
        return None, bufsize
    for name, value in (("encoding", encoding), ("errors", errors)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if encoding is None:
        encoding = _default_encoding()
    codecs.lookup(encoding)
    if errors is not None:
        codecs.lookup_error(errors)
    if bufsize == 1:
        # Line buffering is the text layer's; the binary layer below keeps
        # its default size (it cannot buffer by lines).
        return TextMode(encoding, errors, True), -1
    return TextMode(encoding, errors, False), bufsize


def wrap_pipes(files: Sequence[Optional[IO[bytes]]], mode: TextMode) -> List[Optional[IO[Any]]]:
    """Text streams over ``(stdin, stdout, stderr)`` binary pipe files, as ``Popen`` makes them.

    Each wrapper owns its file from here on.  Cannot fail once
    :func:`text_mode` has checked the mode (the encoding is known).
    """
    out: List[Optional[IO[Any]]] = []
    for i, f in enumerate(files):
        if f is None:
            out.append(None)
        elif i == 0:
            out.append(io.TextIOWrapper(f, encoding=mode.encoding, errors=mode.errors,
                                        write_through=True,
                                        line_buffering=mode.line_buffering))
        else:
            out.append(io.TextIOWrapper(f, encoding=mode.encoding, errors=mode.errors))
    return out


def is_text(f: Any) -> bool:
    """Whether a pipe of a Process is a text stream (spawn made it in text mode)."""
    return isinstance(f, io.TextIOWrapper)


def encode_input(stdin: Any, data: Any) -> bytes:
    """``communicate()``'s input for a text-mode ``stdin``: encoded as ``Popen`` does."""
    if not isinstance(data, str):
        raise TypeError(f"input must be a str in text mode, not {type(data).__name__}")
    return data.encode(stdin.encoding, stdin.errors)


def decode_output(f: Any, data: bytes) -> str:
    """One output of ``communicate()`` from a text-mode pipe: decoded, newlines translated."""
    text = data.decode(f.encoding, f.errors)
    return text.replace("\r\n", "\n").replace("\r", "\n")
