"""``pidsafe-runc features``: what this runtime, build and kernel support, as JSON."""

from __future__ import annotations

import json
from typing import Any, Dict, Sequence


def cmd_features(root: str, argv: Sequence[str]) -> int:
    from ..container._config_process import CAPABILITIES
    from ..container._config_linux import NAMESPACE_TYPES

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
            "seccomp": _seccomp_features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.pidsafe.pidfd": "init held by a pidfd from clone3"},
    }
    print(json.dumps(doc, indent=2))
    return 0


def _seccomp_features() -> Dict[str, Any]:
    """features' ``linux.seccomp``: what this build and this kernel can do."""
    from ..container._config_seccomp import ACTIONS, ARCHITECTURES, FLAGS, OPERATORS
    from .._sys import _seccomp as sc

    if not sc.available():
        return {"enabled": False}
    known = sorted(FLAGS)
    return {
        "enabled": True,
        "actions": sorted(a for a, v in ACTIONS.items() if sc.kernel_has_action(v)),
        "operators": sorted(OPERATORS),
        "archs": sorted(a for a in ARCHITECTURES
                        if sc.arch_token(a[len("SCMP_ARCH_"):].lower()) != 0),
        "knownFlags": known,
        "supportedFlags": [f for f in known if sc.kernel_has_flag(FLAGS[f])],
    }
