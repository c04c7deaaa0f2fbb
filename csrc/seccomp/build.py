"""cffi build script for pidsafe._libseccomp (API, out-of-line mode).

A second, small extension beside pidsafe._native: only this one links
libseccomp, so the rest of pidsafe neither needs libseccomp-dev to build
nor loads libseccomp.so unless a container asks for a seccomp filter.

libseccomp's headers are optional.  When a test program that includes
<seccomp.h> and links -lseccomp compiles, the module is built with
PIDSAFE_HAS_LIBSECCOMP; otherwise (or with PIDSAFE_NO_LIBSECCOMP=1 in the
environment) it is built without, and pidsafe refuses ``linux.seccomp``
with a message that says what to install.  The package version is
compiled in, as for pidsafe._native.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sysconfig
import tempfile
from typing import List, Tuple

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CDEF_RE = re.compile(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", re.S)


def _version() -> str:
    text = (ROOT / "pidsafe" / "_version.py").read_text()
    m = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if m is None:
        raise RuntimeError("pidsafe/_version.py has no __version__")
    return m.group(1)


def _have_libseccomp() -> bool:
    """Whether <seccomp.h> and -lseccomp are there (a real compile and link)."""
    if os.environ.get("PIDSAFE_NO_LIBSECCOMP") == "1":
        return False
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <seccomp.h>\n"
                    "int main(void) { return seccomp_version() == 0; }\n")
        try:
            done = subprocess.run(cc + [src, "-o", os.path.join(tmp, "t"), "-lseccomp"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return False
    return done.returncode == 0


def _options() -> Tuple[List[Tuple[str, str]], List[str]]:
    macros = [("PIDSAFE_VERSION", '"%s"' % _version())]
    if _have_libseccomp():
        print("pidsafe: building pidsafe._libseccomp with libseccomp")
        return macros + [("PIDSAFE_HAS_LIBSECCOMP", "1")], ["seccomp"]
    print("pidsafe: libseccomp's headers not found (libseccomp-dev): "
          "building pidsafe._libseccomp without; linux.seccomp will be refused")
    return macros, []


_header = HERE / "filter.h"
_m = CDEF_RE.search(_header.read_text())
if _m is None:
    raise RuntimeError(f"{_header}: no CDEF BEGIN/END markers")
_macros, _libraries = _options()

ffibuilder = FFI()
ffibuilder.cdef(_m.group(1))
ffibuilder.set_source(
    "pidsafe._libseccomp",
    '#include "filter.h"\n',
    sources=[str((HERE / "filter.c").relative_to(ROOT))],
    include_dirs=[str(HERE.relative_to(ROOT))],
    define_macros=_macros,
    libraries=_libraries,
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
