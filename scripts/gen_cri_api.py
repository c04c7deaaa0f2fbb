"""gen_cri_api.py: regenerate the CRI gRPC client the CRI tests use.

    python3 scripts/gen_cri_api.py

Compiles tests/ctrd/cri_api/v1/api.proto (k8s.io/cri-api v0.25.0, as
vendored by containerd v1.6.20; see tests/ctrd/cri_api/README.md) into
tests/ctrd/cri_api/v1/api_pb2.py and api_pb2_grpc.py, with the protoc and
gRPC plugin of grpcio-tools GRPCIO_TOOLS, installed from PyPI into a
throw-away venv.  The proto imports gogo.proto and sets gogoproto file
options, which only Go's code generator reads: a copy without them is what
gets compiled.  The generated modules check at import that grpcio and
protobuf are at least the versions they were generated with: keep
pyproject's test extra (grpcio, protobuf) in step with GRPCIO_TOOLS.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

GRPCIO_TOOLS = "1.85.4"
HERE = os.path.dirname(os.path.abspath(__file__))
API = os.path.join(HERE, "..", "tests", "ctrd", "cri_api", "v1")
#: Where the proto sits under tests/ (which is on the tests' sys.path): it names the package
#: the generated gRPC module imports the messages from (ctrd.cri_api.v1).
PROTO = "ctrd/cri_api/v1/api.proto"


def strip_gogo(text: str) -> str:
    """``text`` without the gogo.proto import and the ``(gogoproto.*)`` options."""
    text = re.sub(r'^import "github\.com/gogo/protobuf/gogoproto/gogo\.proto";\n', "", text,
                  flags=re.M)
    text = re.sub(r"^\s*option \(gogoproto\.[^;]*;\n", "", text, flags=re.M)
    text = re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)
    if "gogoproto" in text:
        raise SystemExit("gen_cri_api: a gogoproto option this script does not know is left")
    return text


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        py = os.path.join(venv, "bin", "python")
        subprocess.run([py, "-m", "pip", "install", "-q", f"grpcio-tools=={GRPCIO_TOOLS}"],
                       check=True)
        src = os.path.join(tmp, "src")
        os.makedirs(os.path.join(src, os.path.dirname(PROTO)))
        with open(os.path.join(API, "api.proto")) as f:
            proto = strip_gogo(f.read())
        with open(os.path.join(src, PROTO), "w") as f:
            f.write(proto)
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        subprocess.run([py, "-m", "grpc_tools.protoc", "-I", src, f"--python_out={out}",
                        f"--grpc_python_out={out}", PROTO], check=True)
        for name in ("api_pb2.py", "api_pb2_grpc.py"):
            shutil.copy(os.path.join(out, os.path.dirname(PROTO), name), os.path.join(API, name))
    print(f"gen_cri_api: wrote {os.path.normpath(API)}/api_pb2.py, api_pb2_grpc.py")


if __name__ == "__main__":
    main()
