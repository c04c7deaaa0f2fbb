"""Only here for cffi_modules, which pyproject.toml cannot express."""

from setuptools import setup

setup(cffi_modules=["csrc/build.py:ffibuilder"])
