"""The package version; csrc/build.py compiles it into pidsafe._native."""

__version__ = "0.1.0"
