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
  They need a C compiler and a static libc: musl (``musl-gcc``, Debian's
  musl-tools) where there is one, else glibc's libc.a (libc6-dev).  musl
  for its start-up: glibc's static start-up reads the CPU's features and
  caches with some 80 CPUID instructions, and in a virtual machine each
  traps to the hypervisor (5 us here, under nested virtualisation): an
  empty static glibc program costs 600 us to spawn and reap there, a musl
  one 240 us, and pidsafe-init runs at every container start and exec.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
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
        cc = self._helper_cc()
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

    def _helper_cc(self) -> List[str]:
        """The compiler of the static helpers: musl-gcc (see the module
        docstring), given the kernel's headers, or else the C compiler."""
        musl = shutil.which("musl-gcc")
        if musl is None:
            return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        # musl-gcc searches musl's headers only: the helpers' <linux/...> and
        # the <asm/...> these include come from the kernel's (linux-libc-dev),
        # through a folder of their own so that no glibc header is seen.
        kernel = os.path.join(self.build_temp, "musl-kernel-headers")
        os.makedirs(kernel, exist_ok=True)
        arch = sysconfig.get_config_var("MULTIARCH") or ""
        for sub, target in (("linux", "/usr/include/linux"),
                            ("asm-generic", "/usr/include/asm-generic"),
                            ("asm", os.path.join("/usr/include", arch, "asm"))):
            link = os.path.join(kernel, sub)
            if not os.path.isdir(target):
                target = os.path.join("/usr/include", sub)
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(target, link)
        return [musl, "-isystem", kernel]

    def get_outputs(self) -> List[str]:
        return list(super().get_outputs()) + [self._helper_path(n) for n in HELPERS]


setup(cffi_modules=["csrc/native/build.py:ffibuilder", "csrc/seccomp/build.py:ffibuilder"],
      cmdclass={"build_ext": BuildExtAndHelpers},
      # not [project.scripts] console scripts: see the files
      scripts=["scripts/containerd-shim-pidsafe-v1", "scripts/pidsafe-runc"])
