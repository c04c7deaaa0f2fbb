"""Text mode on spawn(): text=, encoding=, errors=, universal_newlines=, side by side with Popen."""

from __future__ import annotations

import io
import select
import subprocess
import sys
from typing import Any, Dict, Iterator, Tuple

import pytest

import pidsafe

from conftest import assert_nothing_left, children, open_fds

PIPE = subprocess.PIPE
PY = sys.executable

TEXT_ARGS = [
    {"text": True},
    {"universal_newlines": True},
    {"encoding": "utf-8"},
    {"encoding": "latin-1", "errors": "replace"},
    {"errors": "surrogateescape"},
    {"text": True, "bufsize": 1},
    {"text": True, "bufsize": 0},
    {"text": True, "bufsize": 4096},
    {"text": True, "universal_newlines": True},
    {"text": False},
    {"universal_newlines": False, "bufsize": 0},
]


def _ids(kw: Dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items())


def _shape(f: Any) -> Tuple[Any, ...]:
    """What a pipe object looks like: its types and text-layer settings."""
    if isinstance(f, io.TextIOWrapper):
        return (type(f), type(f.buffer), f.encoding, f.errors, f.line_buffering,
                f.write_through)
    return (type(f),)


@pytest.fixture
def both() -> Iterator[Any]:
    """both(args, **kw) -> (Popen, pidsafe.Process), closed and waited at the end."""
    made = []

    def start(args: Any, **kw: Any) -> Tuple[subprocess.Popen, pidsafe.Process]:  # type: ignore[type-arg]
        pair = (subprocess.Popen(args, **kw), pidsafe.spawn(args, **kw))
        made.append(pair)
        return pair

    yield start
    for popen, p in made:
        for proc in (popen, p):
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            proc.wait()
        p.close()


@pytest.mark.parametrize("kw", TEXT_ARGS, ids=_ids)
def test_pipes_are_what_popen_makes(both: Any, kw: Dict[str, Any]) -> None:
    popen, p = both(["cat"], stdin=PIPE, stdout=PIPE, stderr=PIPE, **kw)
    for name in ("stdin", "stdout", "stderr"):
        assert _shape(getattr(p, name)) == _shape(getattr(popen, name)), name


@pytest.mark.parametrize("kw", [k for k in TEXT_ARGS if k.get("text", True)
                                and k.get("universal_newlines", True)], ids=_ids)
def test_communicate_like_popen(both: Any, kw: Dict[str, Any]) -> None:
    data = "line1\r\nline2\rline3\nü€\n"
    script = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); " \
             "sys.stderr.buffer.write(d.swapcase())"
    popen, p = both([PY, "-c", script], stdin=PIPE, stdout=PIPE, stderr=PIPE, **kw)
    want = popen.communicate(data)
    got = p.communicate(data, timeout=30)
    assert got == want
    assert isinstance(got[0], str)


@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_communicate_with_one_pipe_like_popen(both: Any, which: str) -> None:
    """The path without a selector: the text stream's own read()."""
    out = "a\r\nb\rc"
    script = f"import sys; sys.{which}.buffer.write({out.encode()!r})"
    popen, p = both([PY, "-c", script], text=True, **{which: PIPE})
    assert p.communicate() == popen.communicate()
    assert p.returncode == 0


def test_communicate_stdin_only_in_text_mode(both: Any, tmp_path: Any) -> None:
    target = tmp_path / "out"
    popen, p = both(["sh", "-c", f"cat >> {target}"], stdin=PIPE, text=True)
    assert popen.communicate("é\n") == p.communicate("é\n") == (None, None)
    assert target.read_text() == "é\né\n"


def test_bytes_input_in_text_mode_is_a_type_error(both: Any) -> None:
    popen, p = both(["cat"], stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True)
    with pytest.raises(AttributeError):   # 'bytes' object has no attribute 'encode'
        popen.communicate(b"x")
    with pytest.raises(TypeError):
        p.communicate(b"x")


def test_str_input_in_binary_mode_is_a_type_error(both: Any) -> None:
    popen, p = both(["cat"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
    with pytest.raises(TypeError):
        popen.communicate("x")
    with pytest.raises(TypeError):
        p.communicate("x")


def test_line_buffered_stdin_reaches_the_child_without_flush() -> None:
    with pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, text=True, bufsize=1) as p:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("one line\n")          # no flush(): line buffering sends it
        assert select.select([p.stdout], [], [], 30)[0]
        assert p.stdout.readline() == "one line\n"
        p.stdin.close()


def test_without_line_buffering_a_line_waits_for_flush() -> None:
    with pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, text=True) as p:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("held\n")
        assert not select.select([p.stdout], [], [], 0.2)[0]
        p.stdin.flush()
        assert p.stdout.readline() == "held\n"
        p.stdin.close()


def test_reading_translates_newlines() -> None:
    with pidsafe.spawn(["printf", "a\\r\\nb\\rc\\n"], stdout=PIPE,
                       universal_newlines=True) as p:
        assert p.stdout is not None
        assert p.stdout.read() == "a\nb\nc\n"


def test_default_encoding_is_popens() -> None:
    with subprocess.Popen(["true"], stdout=PIPE, text=True) as popen:
        want = popen.stdout.encoding if popen.stdout else None
    with pidsafe.spawn(["true"], stdout=PIPE, text=True) as p:
        assert p.stdout is not None and p.stdout.encoding == want


def test_default_encoding_warns_like_popen() -> None:
    """-X warn_default_encoding: an EncodingWarning naming the caller's line."""
    script = ("import subprocess, warnings, pidsafe\n"
              "warnings.simplefilter('always')\n"
              "with warnings.catch_warnings(record=True) as w:\n"
              "    pidsafe.spawn(['true'], text=True).__exit__(None, None, None)\n"
              "    pidsafe.spawn(['true'], text=True, encoding='utf-8').__exit__(None, None, None)\n"
              "print([(x.category.__name__, x.lineno) for x in w])\n")
    r = pidsafe.run([PY, "-X", "warn_default_encoding", "-c", script], capture_output=True,
                    text=True, check=True)
    assert r.stdout.strip() == "[('EncodingWarning', 4)]", r.stderr


def test_text_and_universal_newlines_must_agree() -> None:
    kids = children()
    with pytest.raises(subprocess.SubprocessError, match="Cannot disambiguate"):
        subprocess.Popen(["true"], text=True, universal_newlines=False)
    with pytest.raises(ValueError, match="Cannot disambiguate"):
        pidsafe.spawn(["true"], text=True, universal_newlines=False)
    assert children() == kids


@pytest.mark.parametrize("kw, exc", [
    ({"encoding": "no-such-codec"}, LookupError),
    ({"text": True, "errors": "no-such-handler"}, LookupError),
    ({"encoding": 8}, TypeError),
    ({"errors": b"strict"}, TypeError),
])
def test_a_bad_encoding_starts_nothing(kw: Dict[str, Any], exc: type) -> None:
    fds, kids = open_fds(), children()
    with pytest.raises(exc):
        pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, **kw)
    assert_nothing_left(fds, kids)


def test_bufsize_none_is_the_default() -> None:
    with pidsafe.spawn(["true"], stdout=PIPE, bufsize=None) as p:
        assert isinstance(p.stdout, io.BufferedReader)


def test_text_mode_off_never_loads_the_text_module() -> None:
    script = ("import sys, subprocess, pidsafe\n"
              "with pidsafe.spawn(['cat'], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:\n"
              "    assert p.communicate(b'x') == (b'x', None)\n"
              "print('pidsafe.process._text' in sys.modules)\n")
    assert pidsafe.run([PY, "-c", script], capture_output=True, check=True).stdout == b"False\n"
