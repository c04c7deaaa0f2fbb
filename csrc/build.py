"""cffi build script for pidsafe._native (API, out-of-line mode).

Reads the declarations between the CDEF markers of every ``csrc/*.h``, and
of pidsafe-init's protocol (``csrc/init/protocol.h``: its op codes and
records reach Python from the header, never as a copy), into ``ffi.cdef``
and compiles every ``csrc/*.c`` into the extension.  The package
version from ``pidsafe/_version.py`` is compiled in, so that ``pidsafe._sys``
can refuse a stale ``.so`` (see STYLE.md, "The compiled module carries the
package version").
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CDEF_RE = re.compile(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", re.S)


def _version() -> str:
    text = (ROOT / "pidsafe" / "_version.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if m is None:
        raise RuntimeError("pidsafe/_version.py has no __version__")
    return m.group(1)


HEADERS = sorted(HERE.glob("*.h")) + [HERE / "init" / "protocol.h"]


def _cdef() -> str:
    parts = []
    for header in HEADERS:
        m = CDEF_RE.search(header.read_text())
        if m is None:
            raise RuntimeError(f"{header}: no CDEF BEGIN/END markers")
        parts.append(m.group(1))
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pidsafe._native",
    "".join(f'#include "{h.relative_to(HERE)}"\n' for h in HEADERS),
    sources=[str(p.relative_to(ROOT)) for p in sorted(HERE.glob("*.c"))],
    include_dirs=[str(HERE.relative_to(ROOT))],
    define_macros=[("PIDSAFE_VERSION", '"%s"' % _version())],
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
