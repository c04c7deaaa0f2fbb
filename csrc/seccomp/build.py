"""cffi build script for pidsafe._libseccomp: csrc/seccomp/filter.c.

A second, small extension beside pidsafe._native: only this one links
libseccomp, so the rest of pidsafe neither needs libseccomp-dev to build
nor loads libseccomp.so unless a container asks for a seccomp filter.

libseccomp's headers are optional.  When a test program that includes
<seccomp.h> and links -lseccomp compiles, the module is built with
PIDSAFE_HAS_LIBSECCOMP; otherwise (or with PIDSAFE_NO_LIBSECCOMP=1 in the
environment) it is built without, and pidsafe refuses ``linux.seccomp``
with a message that says what to install.  The rest (cdef, version,
flags) is csrc/cffi_build.py's, as for pidsafe._native.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from typing import List, Tuple

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))   # csrc/, for the build helper
from cffi_build import ffibuilder as _ffibuilder  # noqa: E402


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
    if _have_libseccomp():
        print("pidsafe: building pidsafe._libseccomp with libseccomp")
        return [("PIDSAFE_HAS_LIBSECCOMP", "1")], ["seccomp"]
    print("pidsafe: libseccomp's headers not found (libseccomp-dev): "
          "building pidsafe._libseccomp without; linux.seccomp will be refused")
    return [], []


_macros, _libraries = _options()
ffibuilder = _ffibuilder("pidsafe._libseccomp", headers=[HERE / "filter.h"],
                         sources=[HERE / "filter.c"], define_macros=_macros,
                         libraries=_libraries)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
