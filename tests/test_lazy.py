"""pidsafe._lazy: a face's names imported on first read (PEP 562)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pidsafe
from pidsafe import _lazy


def test_a_name_loads_its_module_on_first_read() -> None:
    # A new interpreter: this one has imported most of pidsafe already.
    code = ("import sys, pidsafe.mount as m\n"
            "before = 'pidsafe.mount._spec' in sys.modules\n"
            "m.Mount\n"
            "print(before, 'pidsafe.mount._spec' in sys.modules, 'Mount' in vars(m))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.split() == ["False", "True", "True"]


def test_a_name_may_be_exported_under_another_name() -> None:
    from pidsafe.mount import _spec

    assert pidsafe.mount.MountPlan is _spec.Plan
    assert pidsafe.mount.plan_mount is _spec.plan


def test_an_unknown_name_is_an_attribute_error() -> None:
    getattr_, dir_ = _lazy.exports("pidsafe.mount", {"Mount": "._spec"})
    with pytest.raises(AttributeError, match="'pidsafe.mount' has no attribute 'Nope'"):
        getattr_("Nope")
    assert "Mount" in dir_()
