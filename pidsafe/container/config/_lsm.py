"""Whether SELinux or AppArmor is enabled here, for the messages that refuse labels.

pidsafe applies neither: ``linux.mountLabel``, ``process.selinuxLabel`` and
``process.apparmorProfile`` are refused when set.  runc refuses an SELinux
label where SELinux is disabled and fails to apply an AppArmor profile
where AppArmor is not enabled, so a config that runc would run on this
machine is only refused here when the LSM is actually enabled; the message
says which case it is.  The checks are runc's: SELinux's filesystem is
mounted; AppArmor's securityfs directory exists and its module says ``Y``.
"""

from __future__ import annotations


def selinux_enabled() -> bool:
    """Whether SELinux is enabled (selinuxfs is mounted)."""
    from ...mount import mountinfo

    try:
        return any(m.fstype == "selinuxfs" for m in mountinfo())
    except OSError:
        return False


def apparmor_enabled() -> bool:
    """Whether AppArmor is enabled (runc's test)."""
    import os

    if not os.path.isdir("/sys/kernel/security/apparmor"):
        return False
    try:
        with open("/sys/module/apparmor/parameters/enabled", "rb") as f:
            return f.read(1) == b"Y"
    except OSError:
        return False


#: The fields that name a label or profile: the LSM, and what the message calls them.
LABELS = {"mountLabel": ("SELinux", "mount labels"),
          "selinuxLabel": ("SELinux", "process labels"),
          "apparmorProfile": ("AppArmor", "")}


def refusal(key: str) -> str:
    """Why the field ``key`` (of :data:`LABELS`) is refused here."""
    lsm, what = LABELS[key]
    return selinux_refusal(what) if lsm == "SELinux" else apparmor_refusal()


def selinux_refusal(what: str) -> str:
    """Why ``what`` (an SELinux label field) is refused here."""
    if selinux_enabled():
        return f"{what}: pidsafe does not apply SELinux labels"
    return f"{what}: SELinux is not enabled on this machine"


def apparmor_refusal() -> str:
    """Why ``process.apparmorProfile`` is refused here."""
    if apparmor_enabled():
        return "AppArmor profiles: pidsafe does not apply them"
    return "AppArmor profiles: AppArmor is not enabled on this machine"
