"""The one build helper of pidsafe's cffi extensions (API, out-of-line mode).

``csrc/native/build.py`` (pidsafe._native) and ``csrc/seccomp/build.py``
(pidsafe._libseccomp) each name their headers and sources and call
:func:`ffibuilder`, which

* reads the declarations between the ``/* CDEF BEGIN */`` and
  ``/* CDEF END */`` markers of each header into ``ffi.cdef`` (real headers,
  compiled by the C side too: integer #defines, fixed-width structs and
  prototypes only between the markers);
* compiles the package version in (``PIDSAFE_VERSION``), so that
  ``pidsafe._sys`` refuses a stale ``.so`` (STYLE.md, "The compiled module
  carries the package version");
* gives both the same compiler flags, and every header's folder (and
  ``csrc/shared/``, the headers read by more than one build product) as
  include directories.

setup.py lists both build scripts in ``cffi_modules``.
"""

from __future__ import annotations

import pathlib
import re
from typing import Sequence, Tuple

from cffi import FFI

CSRC = pathlib.Path(__file__).resolve().parent
ROOT = CSRC.parent
#: Headers read by more than one build product (an extension, a static program).
SHARED = CSRC / "shared"
CFLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
_CDEF = re.compile(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", re.S)


def version() -> str:
    """The package version, from ``pidsafe/_version.py``."""
    text = (ROOT / "pidsafe" / "_version.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if m is None:
        raise RuntimeError("pidsafe/_version.py has no __version__")
    return m.group(1)


def cdef_of(header: pathlib.Path) -> str:
    """The declarations between ``header``'s CDEF markers."""
    m = _CDEF.search(header.read_text())
    if m is None:
        raise RuntimeError(f"{header}: no CDEF BEGIN/END markers")
    return m.group(1)


def ffibuilder(module: str, headers: Sequence[pathlib.Path], sources: Sequence[pathlib.Path],
               define_macros: Sequence[Tuple[str, str]] = (),
               libraries: Sequence[str] = ()) -> FFI:
    """The FFI builder of extension ``module``: the cdef of ``headers``, which the
    generated C includes, compiled with ``sources``."""
    ffi = FFI()
    ffi.cdef("\n".join(cdef_of(h) for h in headers))
    folders = sorted({h.parent for h in headers} | {SHARED})
    ffi.set_source(
        module,
        "".join(f'#include "{h.name}"\n' for h in headers),
        sources=[str(p.relative_to(ROOT)) for p in sources],
        include_dirs=[str(d.relative_to(ROOT)) for d in folders],
        define_macros=[("PIDSAFE_VERSION", f'"{version()}"'), *define_macros],
        libraries=list(libraries),
        extra_compile_args=CFLAGS,
    )
    return ffi
