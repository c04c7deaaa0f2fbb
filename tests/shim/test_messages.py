"""pidsafe.shim._messages: generated from the vendored protos, as protoc reads them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any, Dict, List, Type

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pbhelp
from pidsafe.errors import DecodeError
from pidsafe.shim import _codec, _wire, _messages as m
from pidsafe.shim._codec import Message

_spec = importlib.util.spec_from_file_location(
    "gen_shim_messages", pbhelp.REPO / "scripts" / "gen_shim_messages.py")
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

GENERATED: List[Type[Message]] = sorted(
    (c for c in vars(m).values() if isinstance(c, type) and issubclass(c, Message)
     and c is not Message), key=lambda c: c.FULL_NAME)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return pbhelp.compile_protos(pbhelp.PROTO_ROOT, gen.FILES, tmp_path_factory.mktemp("protos"))


def test_checked_in_module_is_what_the_generator_makes() -> None:
    proc = subprocess.run([sys.executable, str(pbhelp.REPO / "scripts" / "gen_shim_messages.py"),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_wire_example_from_containerd() -> None:
    # The runc shim's CreateTaskResponse, as seen on the wire from containerd 1.6.20.
    assert m.CreateTaskResponse(pid=871).encode() == bytes.fromhex("08e706")
    assert m.CreateTaskResponse.decode(bytes.fromhex("08e706")).pid == 871
    assert m.TaskService.NAME == "containerd.task.v2.Task"
    assert m.TaskService.Create.request is m.CreateTaskRequest
    assert m.EventsService.Forward.full_name == "/containerd.services.events.ttrpc.v1.Events/Forward"


_KINDS = {1: _wire.DOUBLE, 2: _wire.FLOAT, 3: _wire.INT64, 4: _wire.UINT64,
          5: _wire.INT32, 6: _wire.FIXED64, 7: _wire.FIXED32, 8: _wire.BOOL,
          9: _wire.STRING, 11: _wire.MESSAGE, 12: _wire.BYTES, 13: _wire.UINT32,
          14: _wire.ENUM, 15: _wire.SFIXED32, 16: _wire.SFIXED64, 17: _wire.SINT32,
          18: _wire.SINT64}


def _describe(fd: Any) -> Dict[str, Any]:
    """A field as protoc sees it, in the codec's terms."""
    if pbhelp.is_map(fd):
        key, value = fd.message_type.fields_by_number[1], fd.message_type.fields_by_number[2]
        return {"label": _wire.MAP, "key": _KINDS[key.type], "value": _KINDS[value.type],
                "ref": value.message_type.full_name if value.message_type else None}
    return {"label": _wire.REPEATED if pbhelp.is_repeated(fd) else _wire.SINGLE,
            "kind": _KINDS[fd.type],
            "ref": fd.message_type.full_name if fd.message_type else None,
            "packed": fd.is_packed if pbhelp.is_repeated(fd) and fd.type not in (9, 11, 12)
            else False}


def _ours(f: _wire.Field) -> Dict[str, Any]:
    if f.label == _wire.MAP:
        kf, vf = f.ref
        return {"label": _wire.MAP, "key": kf.kind, "value": vf.kind,
                "ref": vf.ref.FULL_NAME if vf.ref else None}
    return {"label": f.label, "kind": f.kind, "ref": f.ref.FULL_NAME if f.ref else None,
            "packed": f.packed}


def test_every_message_has_the_fields_protoc_sees(pool: Any) -> None:
    names = set()
    for path in gen.FILES:
        todo = list(pool.FindFileByName(path).message_types_by_name.values())
        while todo:
            desc = todo.pop()
            todo += [d for d in desc.nested_types if not d.GetOptions().map_entry]
            names.add(desc.full_name)
            cls = _codec.message_class(desc.full_name)
            theirs = {fd.number: (fd.name, _describe(fd)) for fd in desc.fields}
            ours = {f.number: (f.name, _ours(f)) for f in cls._fields}
            assert ours == theirs, desc.full_name
    assert names == {c.FULL_NAME for c in GENERATED}


def test_enums_and_services_match(pool: Any) -> None:
    status = pool.FindEnumTypeByName("containerd.v1.types.Status")
    assert {v.name: v.number for v in status.values} == {
        k: v for k, v in vars(m.Status).items() if k.isupper()}
    task = pool.FindServiceByName("containerd.task.v2.Task")
    assert [(x.name, x.input_type.full_name, x.output_type.full_name) for x in task.methods] == [
        (x.name, x.request.FULL_NAME, x.response.FULL_NAME) for x in m.TaskService.METHODS]


@pytest.mark.parametrize("cls", GENERATED, ids=lambda c: c.FULL_NAME)
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_with_protobuf(pool: Any, cls: Type[Message], data: Any) -> None:
    pb_cls = pbhelp.pb_class(pool, cls.FULL_NAME)
    msg = data.draw(pbhelp.values(cls))
    ours = msg.encode()
    assert pbhelp.from_pb(pb_cls.FromString(ours), cls) == msg
    theirs = pbhelp.to_pb(msg, pb_cls()).SerializeToString()
    assert cls.decode(theirs) == msg
    if not pbhelp.has_map(cls):
        assert ours == theirs


def test_any_packs_with_the_bare_type_name() -> None:
    exit_ = m.TaskExit(container_id="c", id="c", pid=42, exit_status=137,
                       exited_at=m.Timestamp(seconds=1, nanos=2))
    packed = m.Any.pack(exit_)
    assert packed.type_url == "containerd.events.TaskExit"       # typeurl v1.0.2, no prefix
    assert packed.unpack() == exit_ == packed.unpack_as(m.TaskExit)
    prefixed = m.Any(type_url="type.googleapis.com/containerd.events.TaskExit", value=packed.value)
    assert prefixed.type_name == "containerd.events.TaskExit" and prefixed.unpack() == exit_
    with pytest.raises(DecodeError, match="not containerd.events.TaskStart"):
        packed.unpack_as(m.TaskStart)
    with pytest.raises(DecodeError, match="unknown message type"):
        m.Any(type_url="x.Y").unpack()


def test_timestamp_helpers() -> None:
    assert m.Timestamp.from_ns(-1) == m.Timestamp(seconds=-1, nanos=999_999_999)
    assert m.Timestamp.from_ns(1_500_000_000).to_ns() == 1_500_000_000
    assert m.Timestamp.now().seconds > 1_600_000_000


def test_import_is_light() -> None:
    # The shim's delete action imports this module: no protobuf, no typing.
    code = ("import sys, pidsafe.shim._messages; "
            "print(sorted(n for n in ('google', 'typing', 'logging', 'dataclasses', 'enum', "
            "'socket', 'threading') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
