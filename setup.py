"""Only here for what pyproject.toml cannot express.

* ``cffi_modules``: the extension pidsafe._native, from csrc/*.c.
* The static helper ``pidsafe/_libexec/pidsafe-helper``, from
  csrc/helper/pidsafe-helper.c: built together with the extension, by
  ``pip install .`` and by editable installs alike (csrc/helper.h says what
  it is for).  It needs a C compiler and static glibc (libc6-dev's libc.a).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from typing import List

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER_SOURCE = os.path.join("csrc", "helper", "pidsafe-helper.c")
HELPER_NAME = os.path.join("_libexec", "pidsafe-helper")


class BuildExtAndHelper(build_ext):
    """build_ext, plus the helper binary next to the extension."""

    def _helper_path(self) -> str:
        if self.inplace:
            return os.path.join(HERE, "pidsafe", HELPER_NAME)
        return os.path.join(self.build_lib, "pidsafe", HELPER_NAME)

    def run(self) -> None:
        super().run()
        out = self._helper_path()
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        cmd = cc + ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
                    "-static", "-I", os.path.join(HERE, "csrc"), "-o", out + ".tmp",
                    os.path.join(HERE, HELPER_SOURCE)]
        print(" ".join(shlex.quote(c) for c in cmd))
        subprocess.run(cmd, check=True)
        os.chmod(out + ".tmp", 0o755)
        os.replace(out + ".tmp", out)

    def get_outputs(self) -> List[str]:
        return list(super().get_outputs()) + [self._helper_path()]


setup(cffi_modules=["csrc/build.py:ffibuilder"], cmdclass={"build_ext": BuildExtAndHelper})
