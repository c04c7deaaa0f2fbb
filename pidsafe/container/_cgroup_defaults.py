"""A container's cgroup where config.json leaves it open: its path, and the
devices every container may use.

Used by create (:mod:`._create`): config.json with no ``cgroupsPath`` gets
``/pidsafe/<state dir tag>-<id>``; device rules get the defaults runc allows.
"""

from __future__ import annotations

import os
import sys

from .._lite import import_module
from .config import DeviceRule, Resources, Spec
from .init import DEFAULT_DEVICES

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

#: The SHA-256 constructor, found on first use.
_sha256: Optional[Callable[[bytes], Any]] = None


def sha256(data: bytes) -> Any:
    """``hashlib.sha256(data)``, from CPython's own SHA-256 where it has one.

    ``import hashlib`` loads OpenSSL's libcrypto (3 ms or more at every
    pidsafe-runc create); the built-in module gives the same digest.  It is
    ``_sha256`` up to Python 3.11 and ``_sha2`` from 3.12; hashlib otherwise.
    Looked up once: a module that is not there is searched for along the
    whole of ``sys.path`` at every try.
    """
    global _sha256
    if _sha256 is None:
        for name in ("_sha2", "_sha256") if sys.version_info >= (3, 12) else ("_sha256",):
            try:
                _sha256 = import_module(name).sha256
                break
            except (ImportError, AttributeError):
                continue
        else:
            import hashlib

            _sha256 = hashlib.sha256
    return _sha256(data)


def default_cgroup(state_dir: str, container_id: str) -> str:
    """``/pidsafe/<state dir tag>-<id>`` when config.json names no cgroupsPath.

    Names on disk are identities: the same id under two state directories
    (two runtimes, two test runs) must not share a cgroup.
    """
    tag = sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]
    return f"/pidsafe/{tag}-{container_id}"


def with_default_devices(spec: Spec) -> Resources:
    """The device rules, plus what every container may use (as runc allows them).

    The config's rules come first; then the default devices, the config's
    own ``linux.devices``, ``/dev/pts/*`` and ``/dev/ptmx`` are allowed.
    """
    r = spec.linux.resources
    if not r.devices:
        return r
    allowed = [DeviceRule(True, "c", major, minor, "rwm") for _, major, minor in DEFAULT_DEVICES]
    allowed += [DeviceRule(True, "c", 136, None, "rwm"), DeviceRule(True, "c", 5, 2, "rwm")]
    allowed += [DeviceRule(True, "b" if d.type == "b" else "c", d.major, d.minor, "rwm")
                for d in spec.linux.devices if d.type != "p"]
    return r.replace(devices=r.devices + tuple(allowed))
