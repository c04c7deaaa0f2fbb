#!/usr/bin/env python3
"""Generate pidsafe/shim/_messages.py and its modules from the vendored protos.

    python scripts/gen_shim_messages.py          # rewrite the files
    python scripts/gen_shim_messages.py --check  # exit 1 if they are stale

The protos live in third_party/proto/ (see its README); scripts/protoparse.py
reads the proto3 subset they use, with nothing beyond the standard library.
The gogoproto and containerd plugin imports, which only steer Go's code
generator, are skipped (IGNORED_IMPORTS), and so are their options: the
vendored files stay as upstream wrote them.  tests/shim/test_messages.py
compiles the same files with protoc (grpcio-tools) and checks every field
of every message, and random values of each, against protobuf itself.

Output: one module per concept, pidsafe/shim/_messages_NAME.py (MODULES:
the protos of one API or one family of types), with one class per message
(``__slots__``, its full name, a schema for pidsafe/shim/_wire.py), a class
of int constants per enum, a class of ``Method`` descriptors per service
(``TaskService.Create``), importing what it refers to from the others; a
stub (.pyi) of each with the typed fields and keyword constructors, for
mypy; and pidsafe/shim/_messages.py, which imports every name from them.
"""

from __future__ import annotations

import argparse
import keyword
import pathlib
import sys
import textwrap
from typing import Dict, Iterator, List, Optional, Tuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from protoparse import Enum, Field, Message, Parser, ProtoError, Service, load, resolve  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "third_party" / "proto"
OUT = REPO / "pidsafe" / "shim"

#: The modules (_messages_NAME): NAME -> (what they hold, the files they are
#: generated from).  In output order; each file's imports are in it or an
#: earlier module.
MODULES: Dict[str, Tuple[str, List[str]]] = {
    "google": ("Protobuf's well-known types and gRPC's status.", [
        "google/protobuf/any.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/empty.proto",
        "google/rpc/status.proto",
    ]),
    "ttrpc": ("ttrpc's request and response, the envelope of every call.", [
        "github.com/containerd/ttrpc/request.proto",
    ]),
    "types": ("containerd's types of a mount and of a task's process.", [
        "github.com/containerd/containerd/api/types/mount.proto",
        "github.com/containerd/containerd/api/types/task/task.proto",
    ]),
    "task": ("The task API a shim serves (containerd's runtime v2).", [
        "github.com/containerd/containerd/runtime/v2/task/shim.proto",
    ]),
    "events": ("The task events a shim publishes, and the events service it publishes "
               "them through.", [
        "github.com/containerd/containerd/api/events/task.proto",
        "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto",
    ]),
    "runc_options": ("The runc shim's options, which containerd sends with a task.", [
        "github.com/containerd/containerd/runtime/v2/runc/options/oci.proto",
    ]),
    "cgroups_v1": ("A task's metrics on cgroup v1, as containerd's cgroups package "
                   "reports them.", [
        "github.com/containerd/cgroups/stats/v1/metrics.proto",
    ]),
    "cgroups_v2": ("A task's metrics on cgroup v2, as containerd's cgroups package "
                   "reports them.", [
        "github.com/containerd/cgroups/v2/stats/metrics.proto",
    ]),
}
#: The files to generate from, in output order (their imports come along).
FILES = [f for _, files in MODULES.values() for f in files]
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

    def package(self, modules: Dict[str, Tuple[str, List[str]]]) -> Dict[str, str]:
        """The modules ``_messages_NAME`` of ``modules`` (NAME -> (docstring,
        files)) and ``_messages``, which imports every name: file name -> text."""
        modules = {f"_messages_{name}": v for name, v in modules.items()}
        self.module_of = {getattr(d, "full", ""): name for name, (_, files) in modules.items()
                          for _, d in self.decls(files)}
        missing = [p.path for p in self.parsers if p.path not in
                   {f for _, files in modules.values() for f in files}]
        if missing:
            raise ProtoError(f"{missing[0]} is in no module: add it to MODULES")
        out: Dict[str, str] = {}
        face = [HEADER.format(doc="The messages of the vendored protos, with their schemas, "
                                  "by concept:\n\n" + "\n".join(
                                      textwrap.fill(f"- {name}: {doc}", 76,
                                                    subsequent_indent="  ")
                                      for name, (doc, _) in modules.items()))]
        names: List[str] = []
        for name, (doc, files) in modules.items():
            out[f"{name}.py"] = self.module(files, doc)
            out[f"{name}.pyi"] = self.stub(files, name)
            mine = [self.py[d.full] for _, d in self.decls(files)
                    if isinstance(d, (Message, Enum))]
            mine += [d.full.rsplit(".", 1)[1] + "Service" for _, d in self.decls(files)
                     if isinstance(d, Service)]
            face.append(_wrap(f"from .{name} import (", mine, ")"))
            names += mine
        face.append(_wrap("\n__all__ = [", [f'"{n}"' for n in names], "]"))
        out["_messages.py"] = "\n".join(face) + "\n"
        return out

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

    def decls(self, files: Optional[List[str]] = None) -> Iterator[Tuple[Parser, object]]:
        """The declarations of ``files`` (default: all), in file order."""
        for p in self.parsers:
            if files is None or p.path in files:
                for d in p.decls:
                    yield p, d

    def imports(self, files: List[str]) -> List[str]:
        """The imports of the messages that the declarations of ``files`` refer to
        (fields, services) from the other modules of :meth:`package`."""
        mine = {getattr(d, "full", "") for _, d in self.decls(files)}
        used: Dict[str, List[str]] = {}
        for _, d in self.decls(files):
            refs: List[str] = []
            if isinstance(d, Message):
                refs = [f.resolved for f in d.fields if self.kind(f) == "MESSAGE"]
            elif isinstance(d, Service):
                refs = [t for _, a, b in d.rpcs for t in (a, b)]
            for full in refs:
                if full not in mine:
                    used.setdefault(self.module_of[full], []).append(self.py[full])
        return [f"from .{mod} import {', '.join(sorted(set(names)))}"
                for mod, names in sorted(used.items())]

    def module(self, files: Optional[List[str]] = None, doc: str = "") -> str:
        """The module of ``files`` (default: all, then it refers to nothing else)."""
        decls = list(self.decls(files))
        out = [HEADER.format(doc=doc or "The messages of the vendored protos, with their schemas.")]
        kinds = sorted({self.kind(f) for _, d in decls if isinstance(d, Message)
                        for f in d.fields} | {"MESSAGE"} |
                       {SCALARS[f.key] for _, d in decls if isinstance(d, Message)
                        for f in d.fields if f.key})
        mixins = sorted({MIXINS[d.full] for _, d in decls
                         if isinstance(d, Message) and d.full in MIXINS})
        out.append("from ._codec import Message, schema")
        out.append(f"from ._wire import {', '.join(kinds)}, MAP, REPEATED")
        out.append("from ._wire import Field as F")
        if any(isinstance(d, Service) for _, d in decls):
            out.append("from ._method import Method")
        if mixins:
            out.append(f"from ._wkt import {', '.join(mixins)}")
        if files is not None:
            out += self.imports(files)
        for p, d in decls:
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
        for p, d in decls:
            if isinstance(d, Service):
                cls = d.full.rsplit(".", 1)[1] + "Service"
                out.append(f"\n\nclass {cls}:\n    \"\"\"Service {d.full} ({p.path}).\"\"\"\n")
                out.append(f'    NAME = "{d.full}"')
                for n, a, b in d.rpcs:
                    out.append(f'    {n} = Method(NAME, "{n}", {self.py[a]}, {self.py[b]})')
                out.append(f"    METHODS = ({', '.join(n for n, _, _ in d.rpcs)},)")
        out.append("\n")
        for _, d in decls:
            if isinstance(d, Message):
                fields = "".join(f"\n    {self.field_expr(f)}," for f in d.fields)
                out.append(f"schema({self.py[d.full]}, ({fields}\n))")
        return "\n".join(out) + "\n"

    def stub(self, files: Optional[List[str]] = None, name: str = "_messages") -> str:
        """The stub of :meth:`module` (of ``files``, module ``name``)."""
        decls = list(self.decls(files))
        mixins = sorted({MIXINS[d.full] for _, d in decls
                         if isinstance(d, Message) and d.full in MIXINS})
        out = [HEADER.format(doc=f"Types of {name}.py for mypy."),
               "import typing as _t\n", "from ._codec import Message"]
        if any(isinstance(d, Service) for _, d in decls):
            out.append("from ._method import Method")
        if mixins:
            out.append(f"from ._wkt import {', '.join(mixins)}")
        if files is not None:
            out += self.imports(files)
        out[-1] += "\n"
        for _, d in decls:
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
        for _, d in decls:
            if isinstance(d, Service):
                out.append(f"\nclass {d.full.rsplit('.', 1)[1]}Service:")
                out.append(f"    NAME: _t.ClassVar[str]")
                for n, a, b in d.rpcs:
                    out.append(f"    {n}: _t.ClassVar[Method[{self.py[a]}, {self.py[b]}]]")
                out.append("    METHODS: _t.ClassVar[tuple[Method[Message, Message], ...]]")
        return "\n".join(out) + "\n"


def _wrap(head: str, items: List[str], tail: str) -> str:
    """``head``, then ``items`` comma-separated on lines four spaces in (at most
    92 characters), then ``tail``."""
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 2 > 88:
            lines.append(line.rstrip())
            line = ""
        line += f"{item}, "
    lines.append(line.rstrip())
    return "\n".join([head] + [f"    {x}" for x in lines] + [tail])


HEADER = '''"""{doc}

Generated by scripts/gen_shim_messages.py from third_party/proto/: do not
edit.  Run ``python scripts/gen_shim_messages.py`` after changing either.
"""
# fmt: off
# flake8: noqa
'''


def generate(root: pathlib.Path = PROTO_ROOT) -> Dict[str, str]:
    """The files of pidsafe/shim/ that :meth:`Generator.package` makes: name -> text."""
    gen = Generator(load(root, FILES, IGNORED_IMPORTS))
    return gen.package(MODULES)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the checked-in files differ from a fresh generation")
    args = ap.parse_args(argv)
    files = generate()
    stale = []
    for path in sorted(OUT.glob("_messages*.py*")):   # of an earlier set of modules
        if path.name not in files:
            stale.append(path)
            if not args.check:
                path.unlink()
    for name, text in files.items():
        path = OUT / name
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
