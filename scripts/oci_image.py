"""oci_image.py ROOTFS OUT.tar NAME: an OCI image archive of a root filesystem, offline.

One gzip layer (the rootfs, reproducible: sorted, mtime 0, owner 0), its
config, manifest and index, as ``ctr images import`` reads them.  Used by
scripts/containerd.sh, benchmarks/bench_runtime_cli.py and the tests' private
containerd (tests/containerd.py); stdlib only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from typing import Any, Dict, List, Optional


def build(rootfs: str, out: str, name: str, *, entrypoint: Optional[List[str]] = None,
          cmd: Optional[List[str]] = None) -> None:
    """Write the image archive ``out`` of ``rootfs`` under the reference ``name``.

    ``entrypoint`` and ``cmd`` go into the image config (default: no
    entrypoint, ``cmd`` ``/bin/sh``); tests/cri builds its pause image so.
    """
    run_config: Dict[str, Any] = {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                                  "Cmd": ["/bin/sh"] if cmd is None else cmd, "WorkingDir": "/"}
    if entrypoint is not None:
        run_config["Entrypoint"] = entrypoint
    layer_tar = subprocess.run(
        ["tar", "-C", rootfs, "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
         "--numeric-owner", "-cf", "-", "."], check=True, capture_output=True).stdout
    blobs: Dict[str, bytes] = {}

    def put(data: bytes) -> Dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": "sha256:" + digest, "size": len(data)}

    layer = put(gzip.compress(layer_tar, mtime=0))
    config = put(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": run_config,
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    }, sort_keys=True).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }, sort_keys=True).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            **manifest, "platform": {"architecture": "amd64", "os": "linux"},
                            "annotations": {"io.containerd.image.name": name,
                                            "org.opencontainers.image.ref.name":
                                                name.rsplit(":", 1)[-1]}}]}
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index).encode(),
             **{f"blobs/sha256/{d}": data for d, data in blobs.items()}}
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(out)))
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.rename(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.splitlines()[0])
    build(*sys.argv[1:4])
