"""``pidsafe-runc features``: what this runtime, build and kernel support, as JSON."""

from __future__ import annotations

import json
from typing import Sequence


def cmd_features(root: str, argv: Sequence[str]) -> int:
    from ..container import CAPABILITIES, NAMESPACE_TYPES, seccomp_features

    doc = {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                  "poststop"],
        "mountOptions": sorted({
            "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "relatime",
            "noatime", "strictatime", "nodiratime", "diratime", "nosymfollow", "bind", "rbind",
            "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
            "runbindable", "idmap", "ridmap"}),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": sorted(CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp_features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.pidsafe.pidfd": "init held by a pidfd from clone3"},
    }
    print(json.dumps(doc, indent=2))
    return 0
