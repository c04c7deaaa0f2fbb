"""A parser of the proto3 subset containerd's protos use (for gen_shim_messages.py).

It knows: ``syntax = "proto3"``, package, imports (weak and public too),
messages (nested too), enums, ``repeated``, ``map<,>``, services of unary
rpcs, and options, all of which are skipped but a field's ``packed``.
What it does not know (oneof, proto3 ``optional``, extensions, groups,
streams, proto2) is an error naming the file and line, never a silent gap.
"""

from __future__ import annotations

import pathlib
import re
from typing import Dict, List, Optional, Set, Tuple

MAP_KEYS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
            "sfixed32", "sfixed64", "bool", "string"}

TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?))
  | (?P<id>\.?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<sym>[{}\[\]()<>=;,])
""", re.S | re.X)


class ProtoError(Exception):
    pass


class Field:
    def __init__(self, name: str, number: int, type_: str, label: str,
                 key: Optional[str] = None, packed: bool = True) -> None:
        self.name, self.number, self.type, self.label = name, number, type_, label
        self.key, self.packed = key, packed     # key: a map's key type
        self.resolved = ""                      # a message/enum's full name


class Message:
    def __init__(self, full: str, fields: List[Field]) -> None:
        self.full, self.fields = full, fields


class Enum:
    def __init__(self, full: str, values: List[Tuple[str, int]]) -> None:
        self.full, self.values = full, values


class Service:
    def __init__(self, full: str, rpcs: List[Tuple[str, str, str]]) -> None:
        self.full, self.rpcs = full, rpcs       # (name, request, response)


class Parser:
    """One .proto file: its package, imports and declarations."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.toks: List[Tuple[str, int]] = []
        pos = 0
        while pos < len(text):
            m = TOKEN.match(text, pos)
            if not m:
                raise self._err(f"unexpected {text[pos:pos + 20]!r}", text.count("\n", 0, pos))
            if m.lastgroup != "ws":
                self.toks.append((m.group(), text.count("\n", 0, pos) + 1))
            pos = m.end()
        self.i = 0
        self.package = ""
        self.imports: List[str] = []
        self.decls: List[object] = []   # Message, Enum, Service in order

    def _err(self, msg: str, line: Optional[int] = None) -> ProtoError:
        if line is None:
            line = self.toks[min(self.i, len(self.toks) - 1)][1] if self.toks else 0
        return ProtoError(f"{self.path}:{line}: {msg}")

    def peek(self) -> str:
        return self.toks[self.i][0] if self.i < len(self.toks) else ""

    def next(self) -> str:
        tok = self.peek()
        if not tok:
            raise self._err("unexpected end of file")
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        if self.next() != tok:
            self.i -= 1
            raise self._err(f"expected {tok!r}, got {self.peek()!r}")

    def skip_option_value(self) -> str:
        if self.peek() == "{":          # an aggregate value: skip it balanced
            depth = 0
            while True:
                tok = self.next()
                depth += {"{": 1, "}": -1}.get(tok, 0)
                if depth == 0:
                    return ""
        return self.next()

    def option_name(self) -> str:
        name = ""
        while self.peek() != "=":
            name += self.next()
        return name

    def parse(self) -> "Parser":
        while self.peek():
            tok = self.next()
            if tok == "syntax":
                self.expect("=")
                if self.next().strip("'\"") != "proto3":
                    raise self._err("only proto3 is supported")
                self.expect(";")
            elif tok == "package":
                self.package = self.next()
                self.expect(";")
            elif tok == "import":
                if self.peek() in ("weak", "public"):
                    self.next()
                self.imports.append(self.next().strip("'\""))
                self.expect(";")
            elif tok == "option":
                self.option_name()
                self.expect("=")
                self.skip_option_value()
                self.expect(";")
            elif tok in ("message", "enum"):
                self.declaration(tok, self.package)
            elif tok == "service":
                self.service()
            elif tok != ";":
                raise self._err(f"unsupported top-level {tok!r}")
        return self

    def declaration(self, kind: str, scope: str) -> None:
        full = f"{scope}.{self.next()}".lstrip(".")
        self.expect("{")
        if kind == "enum":
            self.enum_body(full)
        else:
            self.message_body(full)

    def field_options(self) -> bool:
        """Parse ``[a = b, ...]`` if present; return the ``packed`` option."""
        packed = True
        if self.peek() == "[":
            self.next()
            while True:
                name = self.option_name()
                self.expect("=")
                value = self.skip_option_value()
                if name == "packed":
                    packed = value == "true"
                if self.next() == "]":
                    break
        return packed

    def message_body(self, full: str) -> None:
        msg = Message(full, [])
        self.decls.append(msg)
        while (tok := self.next()) != "}":
            if tok in ("message", "enum"):
                self.declaration(tok, full)
            elif tok in ("option", "reserved", "extensions"):
                while self.next() != ";":
                    pass
            elif tok in ("oneof", "optional", "required", "extend", "group"):
                raise self._err(f"{tok!r} is not supported (add it to the generator)")
            elif tok == ";":
                continue
            else:
                label, key = "single", None
                if tok == "repeated":
                    label, tok = "repeated", self.next()
                elif tok == "map":
                    label = "map"
                    self.expect("<")
                    key = self.next()
                    if key not in MAP_KEYS:
                        raise self._err(f"invalid map key type {key!r}")
                    self.expect(",")
                    tok = self.next()
                    self.expect(">")
                name = self.next()
                self.expect("=")
                number = int(self.next(), 0)
                packed = self.field_options()
                self.expect(";")
                msg.fields.append(Field(name, number, tok, label, key, packed))

    def enum_body(self, full: str) -> None:
        values: List[Tuple[str, int]] = []
        self.decls.append(Enum(full, values))
        while (tok := self.next()) != "}":
            if tok in ("option", "reserved"):
                while self.next() != ";":
                    pass
            elif tok != ";":
                self.expect("=")
                values.append((tok, int(self.next(), 0)))
                self.field_options()
                self.expect(";")

    def service(self) -> None:
        svc = Service(f"{self.package}.{self.next()}".lstrip("."), [])
        self.decls.append(svc)
        self.expect("{")
        while (tok := self.next()) != "}":
            if tok == "option":
                while self.next() != ";":
                    pass
            elif tok == "rpc":
                name = self.next()
                types = []
                for i in range(2):
                    if i:
                        self.expect("returns")
                    self.expect("(")
                    if self.peek() == "stream":
                        raise self._err("streaming rpcs are not supported")
                    types.append(self.next())
                    self.expect(")")
                if self.peek() == "{":
                    while self.next() != "}":
                        pass
                else:
                    self.expect(";")
                svc.rpcs.append((name, types[0], types[1]))
            elif tok != ";":
                raise self._err(f"unexpected {tok!r} in service")


def load(root: pathlib.Path, files: List[str], ignored: Optional[Set[str]] = None
         ) -> List[Parser]:
    """Parse ``files`` and what they import (but ``ignored``), imports first."""
    done: Dict[str, Parser] = {}
    order: List[Parser] = []

    def visit(name: str, stack: Tuple[str, ...]) -> None:
        if name in done:
            return
        if name in stack:
            raise ProtoError(f"import cycle: {' -> '.join(stack + (name,))}")
        path = root / name
        if not path.is_file():
            raise ProtoError(f"{stack[-1] if stack else '?'}: import {name!r} not found under {root}")
        p = Parser(name, path.read_text()).parse()
        for dep in p.imports:
            if not ignored or dep not in ignored:
                visit(dep, stack + (name,))
        done[name] = p
        order.append(p)

    for f in files:
        visit(f, ())
    return order


def resolve(name: str, scope: str, known: Dict[str, object]) -> str:
    """A type name as written in ``scope``, to its full name (proto scoping)."""
    if name.startswith("."):
        return name[1:] if name[1:] in known else ""
    parts = scope.split(".")
    for i in range(len(parts), -1, -1):
        cand = ".".join(parts[:i] + [name])
        if cand in known:
            return cand
    return ""
