"""A pod's user namespace, asked for by a pod annotation.

containerd 1.6's CRI ignores ``userns_options`` (support came in 1.7), so
a pod asks pidsafe's shim instead: ``org.pidsafe.userns`` set to an id map
in containerd's form, ``0:100000:65536`` (``container:host:size``, ranges
joined by ``,``), used for uids and gids alike.  The runtime handler must
pass it on (``pod_annotations = ["org.pidsafe.*"]``); CRI then puts it on
the sandbox (pause) container and on each container of the pod.

The shim turns it into what config.json would say with 1.7:

- the sandbox container gets a new user namespace with the mappings;
- each other container of the pod joins the sandbox's user namespace, or
  gets one of its own with the same mappings when the sandbox is not in
  this daemon.  The namespace is opened by the daemon, which runs the
  pause and holds it by pidfd: ``/proc/<pid>/ns/user`` is opened, then the
  pause is checked not reaped yet (so the pid was still the pause's), and
  the config names the open fd (``/proc/self/fd/N``, read by
  ``Container.create`` in this process); no pid is trusted after the fact;
- a ``sysfs`` mount in a container whose network namespace is the host's
  (a host-network pod: the only kind without CNI) becomes a read-only bind of
  the host's ``/sys``, since a user namespace cannot mount the sysfs of a
  network namespace it does not own (runc does the same for rootless);
- the rootfs is mounted through idmapped mounts (``_rootfs``), so the
  image is never chowned or copied.

A container whose config already has a user namespace is left alone.
"""

from __future__ import annotations

import os

from ._sandbox import CONTAINER_TYPE, annotations_of, sandbox_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

#: The pod annotation that asks for a user namespace (its value: an id map).
USERNS = "org.pidsafe.userns"

_SYS_BIND = {"destination": "/sys", "type": "bind", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}


def pod_userns(bundle: str, config: Dict[str, Any], container_id: str,
               sandbox_userns: Callable[[str], Optional[int]]
               ) -> Tuple[Optional[Tuple[str, str]], Optional[int]]:
    """Rewrite config.json for a pod that asks for a user namespace.

    Args:
        bundle: whose config.json is replaced (atomically) if it changes.
        config: its content, changed in place.
        container_id: the container being created.
        sandbox_userns: an fd (ours, to close) of the user namespace of a
            sandbox's pause in this daemon, or None.

    Returns:
        ``(maps, fd)``: ``maps``, the ``(uidmap, gidmap)`` for the rootfs
        mounts when the container joins the sandbox's namespace (its
        config then has no mappings of its own), else None (nothing asked,
        or the mappings are in the config, where ``_rootfs`` finds them);
        ``fd``, the namespace the config names (``/proc/self/fd/N``), for
        the caller to close once the container is created, or None.

    Raises:
        RpcError: InvalidArgument, the annotation's value is not an id map.
        OSError: config.json could not be written.
    """
    text = annotations_of(config).get(USERNS)
    if not text:
        return None, None
    from ..errors import IDMapError
    from ..userns import IDMap
    from ._errors import invalid_argument

    try:
        idmap = IDMap.parse(str(text))
    except IDMapError as exc:
        raise invalid_argument(f"create: annotation {USERNS}={text!r}: {exc}") from None
    linux = config.setdefault("linux", {})
    if not isinstance(linux, dict):
        return None, None     # malformed: Container.create names the field
    namespaces = linux.setdefault("namespaces", [])
    if not isinstance(namespaces, list) or any(
            isinstance(ns, dict) and ns.get("type") == "user" for ns in namespaces):
        return None, None
    sandbox = sandbox_of(config)
    is_sandbox = sandbox in (None, container_id) or \
        annotations_of(config).get(CONTAINER_TYPE) == "sandbox"
    fd = None if is_sandbox or sandbox is None else sandbox_userns(sandbox)
    maps: Optional[Tuple[str, str]] = None
    if fd is not None:
        namespaces.insert(0, {"type": "user", "path": f"/proc/self/fd/{fd}"})
        maps = (str(idmap), str(idmap))
    else:
        namespaces.insert(0, {"type": "user"})
        linux["uidMappings"] = idmap.to_oci()
        linux["gidMappings"] = idmap.to_oci()
    if _host_network(namespaces):
        mounts = config.get("mounts")
        if isinstance(mounts, list):
            config["mounts"] = [dict(_SYS_BIND) if isinstance(m, dict) and
                                m.get("type") == "sysfs" else m for m in mounts]
    try:
        write_config(bundle, config)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return maps, fd


def _host_network(namespaces: Any) -> bool:
    """Whether the container's network namespace is the shim's own (the host's): none
    in the config, or one joined by a path that is it (a host-network pod's pause)."""
    for ns in namespaces:
        if not isinstance(ns, dict) or ns.get("type") != "network":
            continue
        path = ns.get("path")
        if not path:
            return False
        try:
            theirs, ours = os.stat(path), os.stat("/proc/self/ns/net")
        except OSError:
            return False    # create says what is wrong with the path
        return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
    return True


def write_config(bundle: str, config: Dict[str, Any]) -> None:
    """The bundle's config.json, replaced atomically by ``config``."""
    import json

    path = os.path.join(bundle, "config.json")
    tmp = f"{path}.{os.urandom(8).hex()}.tmp"
    try:
        with open(tmp, "x") as f:      # O_EXCL, and close-on-exec as every Python fd
            json.dump(config, f)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
