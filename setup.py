"""Only here for what pyproject.toml cannot express.

csrc/ has one folder per build product, and csrc/shared/ for the headers
more than one of them reads:

* ``cffi_modules``: the extension pidsafe._native (csrc/native/) and
  pidsafe._libseccomp (csrc/seccomp/: seccomp filters compiled with
  libseccomp when its headers are there), both through one build helper,
  csrc/cffi_build.py.
* The static helper programs pidsafe execs, in ``pidsafe/_libexec/``:
  ``pidsafe-helper`` (csrc/helper/: credentials for ``spawn(uidmap=,
  userns=)``, csrc/shared/helper_protocol.h) and ``pidsafe-init``
  (csrc/init/: a container's set-up, csrc/shared/init_protocol.h).  Built
  together with the extensions, by ``pip install .`` and by editable
  installs alike; static, so that exec'ing one costs no dynamic loading.
  They need a C compiler and static glibc (libc6-dev's libc.a).
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sysconfig
from typing import List

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
#: program name (in pidsafe/_libexec/) -> the folder of its sources under csrc/
HELPERS = {"pidsafe-helper": "helper", "pidsafe-init": "init"}


class BuildExtAndHelpers(build_ext):
    """build_ext, plus the helper programs next to the extension."""

    def _helper_path(self, name: str) -> str:
        base = HERE if self.inplace else self.build_lib
        return os.path.join(base, "pidsafe", "_libexec", name)

    def run(self) -> None:
        super().run()
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        for name, folder in HELPERS.items():
            out = self._helper_path(name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            sources = sorted(glob.glob(os.path.join(HERE, "csrc", folder, "*.c")))
            cmd = cc + ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-static",
                        "-I", os.path.join(HERE, "csrc", "shared"), "-o", out + ".tmp", *sources]
            print(" ".join(shlex.quote(c) for c in cmd))
            subprocess.run(cmd, check=True)
            os.chmod(out + ".tmp", 0o755)
            os.replace(out + ".tmp", out)

    def get_outputs(self) -> List[str]:
        return list(super().get_outputs()) + [self._helper_path(n) for n in HELPERS]


setup(cffi_modules=["csrc/native/build.py:ffibuilder", "csrc/seccomp/build.py:ffibuilder"],
      cmdclass={"build_ext": BuildExtAndHelpers},
      # not [project.scripts] console scripts: see the files
      scripts=["scripts/containerd-shim-pidsafe-v1", "scripts/pidsafe-runc"])
