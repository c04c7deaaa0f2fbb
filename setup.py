"""Only here for what pyproject.toml cannot express: cffi_modules, and the
static helper programs pidsafe execs (csrc/init/ -> pidsafe/_libexec/).

The helpers are built by build_ext, so every install (editable included)
gets them; they are static so that exec'ing one costs no dynamic loading.
"""

import os
import pathlib
import shlex
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent
#: program name -> its sources (a folder under csrc/)
HELPERS = {"pidsafe-init": "csrc/init"}


class BuildExtAndHelpers(build_ext):
    def run(self) -> None:
        super().run()
        if self.inplace:
            out = ROOT / "pidsafe" / "_libexec"
        else:
            out = pathlib.Path(self.build_lib) / "pidsafe" / "_libexec"
        out.mkdir(parents=True, exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "gcc"))
        for name, folder in HELPERS.items():
            sources = sorted(str(p) for p in (ROOT / folder).glob("*.c"))
            cmd = [*cc, "-static", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                   "-o", str(out / name), *sources]
            self.announce("building " + " ".join(cmd), level=2)
            subprocess.run(cmd, check=True)


setup(cffi_modules=["csrc/build.py:ffibuilder"], cmdclass={"build_ext": BuildExtAndHelpers})
