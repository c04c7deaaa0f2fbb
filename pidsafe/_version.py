"""The package version; csrc/cffi_build.py compiles it into both extensions."""

__version__ = "0.1.0"
