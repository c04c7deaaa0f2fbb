#!/usr/bin/env python3
"""Generate pidsafe/shim/_messages.py (and its .pyi) from the vendored protos.

    python scripts/gen_shim_messages.py          # rewrite both files
    python scripts/gen_shim_messages.py --check  # exit 1 if they are stale

The protos live in third_party/proto/ (see its README); scripts/protoparse.py
reads the proto3 subset they use, with nothing beyond the standard library.
The gogoproto and containerd plugin imports, which only steer Go's code
generator, are skipped (IGNORED_IMPORTS), and so are their options: the
vendored files stay as upstream wrote them.  tests/shim/test_messages.py
compiles the same files with protoc (grpcio-tools) and checks every field
of every message, and random values of each, against protobuf itself.

Output: one class per message (``__slots__``, its full name, a schema for
pidsafe/shim/_wire.py), a class of int constants per enum, a class of
``Method`` descriptors per service (``TaskService.Create``); and a stub
(.pyi) with the typed fields and keyword constructors, for mypy.
"""

from __future__ import annotations

import argparse
import keyword
import pathlib
import sys
from typing import Dict, Iterator, List, Optional, Tuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from protoparse import Enum, Field, Message, Parser, ProtoError, Service, load, resolve  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "third_party" / "proto"
OUT = REPO / "pidsafe" / "shim" / "_messages.py"

#: The files to generate from, in output order (their imports come along).
FILES = [
    "google/protobuf/any.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/empty.proto",
    "google/rpc/status.proto",
    "github.com/containerd/ttrpc/request.proto",
    "github.com/containerd/containerd/api/types/mount.proto",
    "github.com/containerd/containerd/api/types/task/task.proto",
    "github.com/containerd/containerd/runtime/v2/task/shim.proto",
    "github.com/containerd/containerd/api/events/task.proto",
    "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto",
    "github.com/containerd/containerd/runtime/v2/runc/options/oci.proto",
    "github.com/containerd/cgroups/stats/v1/metrics.proto",
    "github.com/containerd/cgroups/v2/stats/metrics.proto",
]
#: Imports of Go code-generator plugins: nothing of the wire format.
IGNORED_IMPORTS = {"gogoproto/gogo.proto",
                   "github.com/containerd/containerd/protobuf/plugin/fieldpath.proto"}
#: Python class names are the proto names, with these prefixes per package
#: (the two cgroups packages share message names; google.rpc.Status would
#: meet containerd.v1.types.Status).
PREFIX = {"io.containerd.cgroups.v1": "CgroupsV1", "io.containerd.cgroups.v2": "CgroupsV2",
          "google.rpc": "Rpc"}
#: Helper base classes of well-known types (pidsafe/shim/_wkt.py).
MIXINS = {"google.protobuf.Any": "AnyMixin", "google.protobuf.Timestamp": "TimestampMixin"}
#: Names a field may not take: the Message API, and the mixin's.
RESERVED = {"encode", "decode", "FULL_NAME"}
MIXIN_API = {"AnyMixin": {"pack", "unpack", "unpack_as", "type_name"},
             "TimestampMixin": {"now", "from_ns", "to_ns"}}

SCALARS = {"int32": "INT32", "int64": "INT64", "uint32": "UINT32", "uint64": "UINT64",
           "sint32": "SINT32", "sint64": "SINT64", "bool": "BOOL", "fixed64": "FIXED64",
           "sfixed64": "SFIXED64", "double": "DOUBLE", "fixed32": "FIXED32",
           "sfixed32": "SFIXED32", "float": "FLOAT", "string": "STRING", "bytes": "BYTES"}
PY_TYPES = {"BOOL": "bool", "DOUBLE": "float", "FLOAT": "float", "STRING": "str",
            "BYTES": "bytes"}


class Generator:
    """Python for parsed protos: names, the module, the stub."""

    def __init__(self, parsers: List[Parser]) -> None:
        self.parsers = parsers
        self.known: Dict[str, object] = {}
        self.pkg: Dict[str, str] = {}
        for p in parsers:
            for d in p.decls:
                if isinstance(d, (Message, Enum)):
                    self.known[d.full] = d
                    self.pkg[d.full] = p.package
        self.py: Dict[str, str] = {}
        for full, pkg in self.pkg.items():
            local = full[len(pkg):].lstrip(".").replace(".", "_")
            name = PREFIX.get(pkg, "") + local
            if name in self.py.values():
                raise ProtoError(f"two types would be named {name}: add a PREFIX")
            self.py[full] = name
        for p in parsers:
            for d in p.decls:
                if isinstance(d, Message):
                    for f in d.fields:
                        self._check_field(p, d, f)
                elif isinstance(d, Service):
                    d.rpcs = [(n, self._type(p, d.full, a), self._type(p, d.full, b))
                              for n, a, b in d.rpcs]

    def _type(self, p: Parser, scope: str, name: str) -> str:
        full = resolve(name, scope, self.known)
        if not full:
            raise ProtoError(f"{p.path}: unknown type {name!r} in {scope}")
        return full

    def _check_field(self, p: Parser, msg: Message, f: Field) -> None:
        reserved = RESERVED | MIXIN_API.get(MIXINS.get(msg.full, ""), set())
        if keyword.iskeyword(f.name) or f.name in reserved or f.name.startswith("_"):
            raise ProtoError(f"{p.path}: field name {msg.full}.{f.name} is not usable in Python")
        if f.type not in SCALARS:
            f.resolved = self._type(p, msg.full, f.type)

    def kind(self, f: Field) -> str:
        if f.type in SCALARS:
            return SCALARS[f.type]
        return "ENUM" if isinstance(self.known[f.resolved], Enum) else "MESSAGE"

    def field_expr(self, f: Field) -> str:
        kind = self.kind(f)
        ref = self.py[f.resolved] if kind == "MESSAGE" else None
        if f.label == "map":
            vref = f", ref={ref}" if ref else ""
            return (f'F({f.number}, "{f.name}", MESSAGE, MAP, (F(1, "key", {SCALARS[f.key or ""]}),'
                    f' F(2, "value", {kind}{vref})))')
        args = [str(f.number), f'"{f.name}"', kind]
        if f.label == "repeated":
            args.append("REPEATED")
        if ref:
            args.append(f"ref={ref}")
        if not f.packed:
            args.append("packed=False")
        return f"F({', '.join(args)})"

    def py_type(self, f: Field, key: bool = False) -> str:
        kind = SCALARS[f.key or ""] if key else self.kind(f)
        if kind == "MESSAGE":
            return self.py[f.resolved]
        return PY_TYPES.get(kind, "int")

    def decls(self) -> Iterator[Tuple[Parser, object]]:
        for p in self.parsers:
            for d in p.decls:
                yield p, d

    def module(self) -> str:
        out = [HEADER.format(doc="The messages of the vendored protos, with their schemas.")]
        kinds = sorted({self.kind(f) for _, d in self.decls() if isinstance(d, Message)
                        for f in d.fields} | {"MESSAGE"} |
                       {SCALARS[f.key] for _, d in self.decls() if isinstance(d, Message)
                        for f in d.fields if f.key})
        out.append("from ._codec import Message, schema")
        out.append(f"from ._wire import {', '.join(kinds)}, MAP, REPEATED")
        out.append("from ._wire import Field as F")
        out.append("from ._method import Method")
        out.append("from ._wkt import AnyMixin, TimestampMixin")
        for p, d in self.decls():
            name = self.py.get(getattr(d, "full", ""), "")
            if isinstance(d, Enum):
                out.append(f"\n\nclass {name}:\n    \"\"\"Enum {d.full} ({p.path}).\"\"\"\n")
                out += [f"    {n} = {v}" for n, v in d.values]
            elif isinstance(d, Message):
                bases = ", ".join(filter(None, [MIXINS.get(d.full), "Message"]))
                slots = "".join(f'"{f.name}", ' for f in d.fields)
                out.append(f"\n\nclass {name}({bases}):\n    \"\"\"{d.full} ({p.path}).\"\"\"\n")
                out.append(f"    __slots__ = ({slots.rstrip(', ')}{',' if len(d.fields) == 1 else ''})")
                out.append(f'    FULL_NAME = "{d.full}"')
        for p, d in self.decls():
            if isinstance(d, Service):
                cls = d.full.rsplit(".", 1)[1] + "Service"
                out.append(f"\n\nclass {cls}:\n    \"\"\"Service {d.full} ({p.path}).\"\"\"\n")
                out.append(f'    NAME = "{d.full}"')
                for n, a, b in d.rpcs:
                    out.append(f'    {n} = Method(NAME, "{n}", {self.py[a]}, {self.py[b]})')
                out.append(f"    METHODS = ({', '.join(n for n, _, _ in d.rpcs)},)")
        out.append("\n")
        for _, d in self.decls():
            if isinstance(d, Message):
                fields = "".join(f"\n    {self.field_expr(f)}," for f in d.fields)
                out.append(f"schema({self.py[d.full]}, ({fields}\n))")
        return "\n".join(out) + "\n"

    def stub(self) -> str:
        out = [HEADER.format(doc="Types of _messages.py for mypy."),
               "import typing as _t\n", "from ._codec import Message",
               "from ._method import Method", "from ._wkt import AnyMixin, TimestampMixin\n"]
        for _, d in self.decls():
            if isinstance(d, Enum):
                out.append(f"\nclass {self.py[d.full]}:")
                out += [f"    {n}: _t.Final = {v}" for n, v in d.values]
            elif isinstance(d, Message):
                bases = ", ".join(filter(None, [MIXINS.get(d.full), "Message"]))
                out.append(f"\nclass {self.py[d.full]}({bases}):")
                params = []
                for f in d.fields:
                    t = self.py_type(f)
                    if f.label == "map":
                        attr = f"dict[{self.py_type(f, key=True)}, {t}]"
                        arg = f"_t.Mapping[{self.py_type(f, key=True)}, {t}]"
                    elif f.label == "repeated":
                        attr, arg = f"list[{t}]", f"_t.Iterable[{t}]"
                    elif self.kind(f) == "MESSAGE":
                        attr = arg = f"{t} | None"
                    else:
                        attr = arg = t
                    out.append(f"    {f.name}: {attr}")
                    params.append(f"{f.name}: {arg} = ...")
                sig = "".join(f"\n        {a}," for a in params)
                out.append(f"    def __init__(self, *,{sig}\n    ) -> None: ..."
                           if params else "    def __init__(self) -> None: ...")
        for _, d in self.decls():
            if isinstance(d, Service):
                out.append(f"\nclass {d.full.rsplit('.', 1)[1]}Service:")
                out.append(f"    NAME: _t.ClassVar[str]")
                for n, a, b in d.rpcs:
                    out.append(f"    {n}: _t.ClassVar[Method[{self.py[a]}, {self.py[b]}]]")
                out.append("    METHODS: _t.ClassVar[tuple[Method[Message, Message], ...]]")
        return "\n".join(out) + "\n"


HEADER = '''"""{doc}

Generated by scripts/gen_shim_messages.py from third_party/proto/: do not
edit.  Run ``python scripts/gen_shim_messages.py`` after changing either.
"""
# fmt: off
# flake8: noqa
'''


def generate(root: pathlib.Path = PROTO_ROOT) -> Tuple[str, str]:
    """The text of _messages.py and _messages.pyi."""
    gen = Generator(load(root, FILES, IGNORED_IMPORTS))
    return gen.module(), gen.stub()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the checked-in files differ from a fresh generation")
    args = ap.parse_args(argv)
    module, stub = generate()
    stale = []
    for path, text in ((OUT, module), (OUT.with_suffix(".pyi"), stub)):
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(str(p.relative_to(REPO)) for p in stale)}; "
              f"run python {pathlib.Path(__file__).relative_to(REPO)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
