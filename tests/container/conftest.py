"""Fixtures for container tests (their helpers live in bundles.py)."""

from bundles import busybox_rootfs, make_bundle, state_dir  # noqa: F401 - fixtures
