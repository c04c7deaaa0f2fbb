"""The config.toml of a test containerd (daemon.py), CRI included.

Everything containerd 1.6 writes lives under the daemon's own directory,
except what 1.6 hard-wires: shim sockets in /run/containerd/s (named by a
hash of the daemon's address, so unique to it) and ctr's fifos in
/run/containerd/fifo.  The CRI plugin is on, set up for this machine (issue
14): host-network pods only (CNI pointed at empty directories), no
oom_score_adj below ours (the bounding set lacks CAP_SYS_RESOURCE), the
stream server on an ephemeral port, and two runtime handlers: ``runc``
(io.containerd.runc.v2) and ``pidsafe`` (io.containerd.pidsafe.v1, i.e.
``containerd-shim-pidsafe-v1``, found on the daemon's PATH in .venv/bin;
``org.pidsafe.*`` pod annotations reach the shim).
"""

from __future__ import annotations

import json
from typing import Dict, List

#: Snapshotters that cannot work here (or need setup): off, so the log stays quiet.
_DISABLED = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
             "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]


def cri_handlers(runc_root: str) -> Dict[str, List[str]]:
    """The CRI runtime handlers: name -> the TOML lines that define it."""
    cri = 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes'
    return {
        "runc": [f"[{cri}.runc]",
                 'runtime_type = "io.containerd.runc.v2"',
                 f"[{cri}.runc.options]",
                 f"Root = {json.dumps(runc_root)}"],
        "pidsafe": [f"[{cri}.pidsafe]",
                    'runtime_type = "io.containerd.pidsafe.v1"',
                    'pod_annotations = ["org.pidsafe.*"]'],
    }


def render(*, directory: str, address: str, ttrpc_address: str, runc_root: str,
           sandbox_image: str, debug: bool = True) -> str:
    """The config.toml (version 2) of a daemon whose files all live in ``directory``."""
    q = json.dumps   # a JSON string is a valid TOML basic string
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f"root = {q(directory + '/root')}",
        f"state = {q(directory + '/state')}",
        f"temp = {q(directory + '/tmp')}",
        f"disabled_plugins = {q(_DISABLED)}",
        "[grpc]",
        f"address = {q(address)}",
        "[ttrpc]",
        f"address = {q(ttrpc_address)}",
        "[debug]",
        f"level = {q('debug' if debug else 'info')}",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"path = {q(directory + '/opt')}",
        f"[{cri}]",
        f"sandbox_image = {q(sandbox_image)}",
        "restrict_oom_score_adj = true",
        'stream_server_address = "127.0.0.1"',
        'stream_server_port = "0"',
        "enable_selinux = false",
        f"[{cri}.cni]",
        f"bin_dir = {q(directory + '/cni/bin')}",
        f"conf_dir = {q(directory + '/cni/conf')}",
        f"[{cri}.containerd]",
        'default_runtime_name = "runc"',
        'snapshotter = "overlayfs"',
    ]
    for handler in cri_handlers(runc_root).values():
        lines += handler
    return "\n".join(lines) + "\n"
