"""The real protobuf implementation, to check pidsafe.shim's codec against.

``compile_protos`` strips the Go-only parts of the vendored protos (as
third_party/proto/README.md says), compiles them with grpcio-tools' protoc
into a FileDescriptorSet and loads that into a private descriptor pool;
``to_pb``/``from_pb`` convert between the two representations and
``values`` draws random messages of a generated class with hypothesis.
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any, Dict, Iterable, List, Type

from hypothesis import strategies as st

from pidsafe.shim import _wire
from pidsafe.shim._codec import Message
from pidsafe.shim._wire import Field

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "third_party" / "proto"

_GO_ONLY = [
    re.compile(r'^\s*import\s+(weak\s+)?"(gogoproto/gogo\.proto|'
               r'github\.com/containerd/containerd/protobuf/plugin/fieldpath\.proto)"\s*;',
               re.M),
    re.compile(r"^\s*option\s*\((gogoproto|containerd\.plugin)\.[^;]*;", re.M),
    re.compile(r"\[\s*\(gogoproto\.[^\]]*\]"),
]


def strip_go_options(text: str) -> str:
    """A vendored proto without its gogoproto and containerd-plugin parts."""
    for pattern in _GO_ONLY:
        text = pattern.sub("", text)
    return text


def compile_protos(root: pathlib.Path, files: Iterable[str], tmp: pathlib.Path) -> Any:
    """A DescriptorPool holding ``files`` (and their imports) as protoc parses them."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from grpc_tools import protoc

    src = tmp / "src"
    for path in root.rglob("*.proto"):
        dest = src / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(strip_go_options(path.read_text()))
    out = tmp / "set.pb"
    rc = protoc.main(["protoc", f"-I{src}", "--include_imports",
                      f"--descriptor_set_out={out}", *files])
    assert rc == 0, f"protoc failed on {list(files)}"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return pool


def pb_class(pool: Any, full_name: str) -> Any:
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def is_map(fd: Any) -> bool:
    return bool(fd.message_type is not None and fd.message_type.GetOptions().map_entry)


def is_repeated(fd: Any) -> bool:
    return bool(fd.is_repeated)   # protobuf >= 5 (``label`` is deprecated)


def to_pb(msg: Message, pb: Any) -> Any:
    """Fill the protobuf message ``pb`` with the values of ``msg``."""
    for f in msg._fields:
        v = getattr(msg, f.name)
        if f.label == _wire.MAP:
            target = getattr(pb, f.name)
            for k, item in v.items():
                if f.ref[1].kind == _wire.MESSAGE:
                    to_pb(item, target[k])
                else:
                    target[k] = item
        elif f.kind == _wire.MESSAGE:
            if f.label == _wire.REPEATED:
                for item in v:
                    to_pb(item, getattr(pb, f.name).add())
            elif v is not None:
                sub = getattr(pb, f.name)
                sub.SetInParent()
                to_pb(v, sub)
        elif f.label == _wire.REPEATED:
            getattr(pb, f.name).extend(v)
        else:
            setattr(pb, f.name, v)
    return pb


def from_pb(pb: Any, cls: Type[Message]) -> Message:
    """The generated-class twin of the protobuf message ``pb``."""
    values: Dict[str, Any] = {}
    for f in cls._fields:
        v = getattr(pb, f.name)
        if f.label == _wire.MAP:
            ref = f.ref[1].ref
            values[f.name] = {k: (from_pb(item, ref) if ref else item) for k, item in v.items()}
        elif f.kind == _wire.MESSAGE:
            if f.label == _wire.REPEATED:
                values[f.name] = [from_pb(item, f.ref) for item in v]
            elif pb.HasField(f.name):
                values[f.name] = from_pb(v, f.ref)
        elif f.label == _wire.REPEATED:
            values[f.name] = list(v)
        else:
            values[f.name] = v
    return cls(**values)


_INT = {_wire.INT32: 32, _wire.SINT32: 32, _wire.SFIXED32: 32, _wire.ENUM: 32,
        _wire.INT64: 64, _wire.SINT64: 64, _wire.SFIXED64: 64}
_UINT = {_wire.UINT32: 32, _wire.FIXED32: 32, _wire.UINT64: 64, _wire.FIXED64: 64}


def scalar_strategy(kind: int) -> Any:
    if kind in _INT:
        bits = _INT[kind]
        edges = st.sampled_from([0, 1, -1, -(1 << (bits - 1)), (1 << (bits - 1)) - 1])
        return edges | st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if kind in _UINT:
        bits = _UINT[kind]
        return st.sampled_from([0, 1, 127, 128, (1 << bits) - 1]) | st.integers(0, (1 << bits) - 1)
    if kind == _wire.BOOL:
        return st.booleans()
    if kind == _wire.DOUBLE:
        return st.floats(allow_nan=False)
    if kind == _wire.FLOAT:
        return st.floats(allow_nan=False, width=32)
    if kind == _wire.STRING:
        return st.text(max_size=20)
    assert kind == _wire.BYTES
    return st.binary(max_size=20)


def field_strategy(f: Field, depth: int) -> Any:
    if f.label == _wire.MAP:
        kf, vf = f.ref     # a map's message values are never unset
        item = values(vf.ref, depth + 1) if vf.kind == _wire.MESSAGE else scalar_strategy(vf.kind)
        return st.dictionaries(scalar_strategy(kf.kind), item, max_size=3)
    if f.kind == _wire.MESSAGE:
        one = values(f.ref, depth + 1)
        if f.label == _wire.REPEATED:
            return st.lists(one, max_size=3) if depth < 3 else st.just([])
        return st.none() | one if depth < 3 else st.none()
    one = scalar_strategy(f.kind)
    return st.lists(one, max_size=4) if f.label == _wire.REPEATED else one


def values(cls: Type[Message], depth: int = 0) -> Any:
    """Random instances of the generated class ``cls``."""
    if depth >= 3:
        return st.builds(cls)
    return st.builds(cls, **{f.name: field_strategy(f, depth) for f in cls._fields})


def has_map(cls: Type[Message], seen: Any = ()) -> bool:
    """Whether ``cls`` or a message inside it has a map field (order may differ)."""
    for f in cls._fields:
        if f.label == _wire.MAP:
            return True
        if f.kind == _wire.MESSAGE and f.ref not in seen and has_map(f.ref, (*seen, cls)):
            return True
    return False


def load_generated(root: pathlib.Path, files: List[str], name: str) -> Any:
    """Run the generator on ``files`` and import its output as module ``name``
    inside pidsafe.shim (its relative imports need that)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_shim_messages", REPO / "scripts" / "gen_shim_messages.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.Generator(gen.load(root, files)).module()
    module = type(sys)(f"pidsafe.shim.{name}")
    module.__package__ = "pidsafe.shim"
    exec(compile(text, f"<generated {name}>", "exec"), module.__dict__)
    return module

