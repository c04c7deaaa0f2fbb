"""Refusing SELinux labels and AppArmor profiles (pidsafe/container/config/_lsm.py)."""

from __future__ import annotations

from typing import List

import pytest

import pidsafe.mount
from pidsafe.container.config import _lsm
from pidsafe.mount import MountInfo, parse_mountinfo

MOUNTS = "22 1 0:21 / /proc rw - proc proc rw\n"
SELINUXFS = "23 22 0:22 / /sys/fs/selinux rw - selinuxfs selinuxfs rw\n"


@pytest.mark.parametrize("table, enabled", [(MOUNTS, False), (MOUNTS + SELINUXFS, True)])
def test_selinux_is_enabled_where_selinuxfs_is_mounted(monkeypatch: pytest.MonkeyPatch,
                                                       table: str, enabled: bool) -> None:
    def fake() -> List[MountInfo]:
        return parse_mountinfo(table)

    monkeypatch.setattr(pidsafe.mount, "mountinfo", fake)
    assert _lsm.selinux_enabled() is enabled


def test_an_unreadable_mount_table_says_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> List[MountInfo]:
        raise PermissionError(13, "denied", "/proc/self/mountinfo")

    monkeypatch.setattr(pidsafe.mount, "mountinfo", fail)
    assert _lsm.selinux_enabled() is False


@pytest.mark.parametrize("enabled", [False, True])
def test_each_field_is_refused_with_what_it_is(monkeypatch: pytest.MonkeyPatch,
                                               enabled: bool) -> None:
    monkeypatch.setattr(_lsm, "selinux_enabled", lambda: enabled)
    monkeypatch.setattr(_lsm, "apparmor_enabled", lambda: enabled)
    why = "pidsafe does not apply" if enabled else "is not enabled on this machine"
    assert _lsm.refusal("mountLabel").startswith("mount labels: ") and why in \
        _lsm.refusal("mountLabel")
    assert _lsm.refusal("selinuxLabel").startswith("process labels: ")
    assert _lsm.refusal("apparmorProfile").startswith("AppArmor profiles: ") and why in \
        _lsm.refusal("apparmorProfile")
    assert set(_lsm.LABELS) == {"mountLabel", "selinuxLabel", "apparmorProfile"}
