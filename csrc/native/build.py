"""cffi build script for pidsafe._native: every ``csrc/native/*.c``.

Its cdef is every ``csrc/native/*.h`` and the shared headers whose values
Python needs: the spawn child's failure record, pidsafe-helper's
instructions and pidsafe-init's protocol (their op codes and records reach
Python from the headers, never as a copy).  See csrc/cffi_build.py.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))   # csrc/, for the build helper
from cffi_build import SHARED, ffibuilder as _ffibuilder  # noqa: E402

ffibuilder = _ffibuilder(
    "pidsafe._native",
    headers=[*sorted(HERE.glob("*.h")), SHARED / "child_error.h", SHARED / "helper_protocol.h",
             SHARED / "init_protocol.h"],
    sources=sorted(HERE.glob("*.c")),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
