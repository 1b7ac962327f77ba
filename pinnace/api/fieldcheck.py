"""Server-side field validation for built-in kinds: the unknown, duplicate
and mistyped fields that kube-apiserver's strict JSON decoder reports.

With ``fieldValidation=Strict`` unknown and duplicate fields fail the request
(400 BadRequest, ``strict decoding error: unknown field "spec.prots", ...``);
with ``Warn`` each one becomes a warning header (``unknown field
"spec.prots"``); with ``Ignore`` they are silent. In every mode they are
dropped (``prune``): Kubernetes never stores a field its schema lacks for
a built-in kind, since the object is decoded into its Go type. For the
same reason a field set to null is dropped, and a null inside a list or
map of strings, numbers or booleans becomes that type's zero value ("", 0,
false). Type mismatches
are not strict errors: the Go decoder always rejects them, whatever the mode,
with ``json: cannot unmarshal string into Go struct field
DeploymentSpec.spec.replicas of type int32``.

Each schema definition is compiled once into a small tree of ``_Node`` so a
check is one walk over the object with dict look-ups only.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Literal

from pinnace.api import schema

IssueKind = Literal["unknown", "duplicate", "type", "null"]


@dataclass(frozen=True)
class FieldIssue:
    kind: IssueKind
    path: str  # "spec.containers[0].foo"
    message: str  # 'unknown field "spec.containers[0].foo"'


# Node kinds
_OBJ, _MAP, _ARR, _STR, _INT, _NUM, _BOOL, _ANY, _INTSTR, _QTY = range(10)
# What Go's decoder leaves in a string, number or boolean slot given null.
_ZERO: dict[int, Any] = {_STR: "", _INT: 0, _NUM: 0, _BOOL: False}

# Definitions whose content is free-form even though upstream types them "object".
_FREEFORM = {
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
}
_INTSTR_DEF = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QTY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"


_NO_KEYS: frozenset[str] = frozenset()


class _Node:
    __slots__ = ("gotype", "item", "kind", "omit", "props", "struct")

    def __init__(self, kind: int, gotype: str = "") -> None:
        self.kind = kind
        self.props: dict[str, _Node] = {}
        self.item: _Node | None = None  # array items / map values
        self.gotype = gotype  # Go type name for messages: "int32", "v1.PodSpec"
        self.struct = ""  # Go struct name of an object: "PodSpec"
        # An object's properties that Go's encoder leaves out when empty.
        self.omit = _NO_KEYS


_ANY_NODE = _Node(_ANY, "interface {}")
_cache: dict[str, _Node] = {}


def _go_name(defname: str) -> str:
    parts = defname.split(".")
    return f"{parts[-2]}.{parts[-1]}"


def _type_of(spec: dict[str, Any]) -> str | None:
    t = spec.get("type")
    if isinstance(t, list):
        return next((x for x in t if x != "null"), None)
    return t  # type: ignore[no-any-return]


def _def_node(name: str) -> _Node:
    node = _cache.get(name)
    if node is not None:
        return node
    if name == _INTSTR_DEF:
        node = _Node(_INTSTR, "intstr.IntOrString")
    elif name == _QTY_DEF:
        node = _Node(_QTY, "resource.Quantity")
    else:
        d = schema.definitions().get(name, {})
        props = d.get("properties")
        if props is not None or (_type_of(d) == "object" and "additionalProperties" not in d
                                 and name not in _FREEFORM):
            node = _Node(_OBJ, _go_name(name))
            node.struct = name.rsplit(".", 1)[-1]
            # Registered before the properties are filled so recursive
            # definitions (JSONSchemaProps) resolve to this same node.
            _cache[name] = node
            for key, sub in (props or {}).items():
                node.props[key] = _spec_node(sub)
            node.omit = frozenset(_omitempty(name)) & node.props.keys()
            return node
        node = _spec_node(d) if _type_of(d) not in (None, "object") else _ANY_NODE
        if name in _FREEFORM:
            node = _ANY_NODE
    _cache[name] = node
    return node


# Go types whose zero value encoding/json's omitempty (or omitzero) leaves out
# and that _clean can tell from JSON: scalars and bytes when zero, slices and
# maps when empty. Pointers are left out only when nil (null, dropped
# anyway); structs never (Quantity, Time and the like included).
_EMPTY_GO = {"string", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "bytes"}


def _omitempty(defname: str) -> list[str]:
    """The fields of an OpenAPI definition (io.k8s.api.apps.v1.DeploymentStatus)
    that its Go struct tags mark omitempty or omitzero, from the Go types
    protobuf.descriptors reads out of kubectl (none when it cannot)."""
    if not defname.startswith("io.k8s."):
        return []
    pkg, _, typ = defname[len("io.k8s."):].rpartition(".")
    try:
        from pinnace.api import protobuf

        structs = protobuf.descriptors()
    except Exception:  # no kubectl to read: nothing is dropped
        return []
    out: list[str] = []
    pending = [f"k8s.io/{pkg.replace('.', '/')}.{typ}"]
    while pending:
        for _number, name, flags, ftype in structs.get(pending.pop(), ()):
            if flags & 4:  # inline (TypeMeta): its fields are this object's
                if isinstance(ftype, list) and ftype[0] == "msg":
                    pending.append(ftype[1])
                continue
            if not flags & 3:
                continue
            if ftype[0] in ("list", "map", "wrap") if isinstance(ftype, list) \
                    else ftype in _EMPTY_GO:
                out.append(name)
    return out


def _spec_node(spec: dict[str, Any]) -> _Node:
    ref = schema.ref_name(spec)
    if ref:
        return _def_node(ref)
    t = _type_of(spec)
    if t == "string":
        return _Node(_STR, "string")
    if t == "integer":
        return _Node(_INT, "int32" if spec.get("format") == "int32" else "int64")
    if t == "number":
        return _Node(_NUM, "float64")
    if t == "boolean":
        return _Node(_BOOL, "bool")
    if t == "array":
        node = _Node(_ARR)
        node.item = _spec_node(spec.get("items") or {})
        node.gotype = "[]" + node.item.gotype
        return node
    if t == "object" and isinstance(spec.get("additionalProperties"), dict):
        node = _Node(_MAP)
        node.item = _spec_node(spec["additionalProperties"])
        node.gotype = "map[string]" + node.item.gotype
        return node
    return _ANY_NODE


def json_kind(value: Any) -> str:
    """A JSON value's kind as Go's decoder names it in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _DupObject(dict):  # type: ignore[type-arg]
    """A JSON object that had a key more than once; keeps the document order."""

    pairs: list[tuple[str, Any]]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    out = _DupObject(d)
    out.pairs = pairs
    return out


class _Walker:
    __slots__ = ("issues",)

    def __init__(self) -> None:
        self.issues: list[FieldIssue] = []

    def type_error(self, value: Any, node: _Node, struct: str, gopath: str, path: str) -> None:
        got = json_kind(value)
        if got == "number" and node.kind == _INT:
            got = f"number {value}"
        where = f"Go struct field {struct}.{gopath}" if struct else "Go value"
        self.issues.append(FieldIssue(
            "type", path, f"json: cannot unmarshal {got} into {where} of type {node.gotype}"))

    def null(self, path: str) -> None:
        self.issues.append(FieldIssue("null", path, f'null becomes a zero value at "{path}"'))

    def walk(self, node: _Node, value: Any, path: str, struct: str, gopath: str) -> None:
        if value is None:
            return
        kind = node.kind
        if kind == _OBJ:
            if not isinstance(value, dict):
                self.type_error(value, node, struct, gopath, path)
                return
            self.walk_object(node, value, path)
        elif kind == _ARR:
            if not isinstance(value, list):
                self.type_error(value, node, struct, gopath, path)
                return
            item = node.item
            assert item is not None
            for i, v in enumerate(value):
                if v is None and item.kind in _ZERO:
                    self.null(f"{path}[{i}]")
                self.walk(item, v, f"{path}[{i}]", struct, gopath)
        elif kind == _MAP:
            if not isinstance(value, dict):
                self.type_error(value, node, struct, gopath, path)
                return
            item = node.item
            assert item is not None
            if item.kind != _ANY:
                for k, v in value.items():
                    if v is None and item.kind in _ZERO:
                        self.null(f"{path}[{k}]")
                    self.walk(item, v, f"{path}[{k}]", struct, gopath)
        elif not _scalar_ok(kind, value):
            self.type_error(value, node, struct, gopath, path)

    def walk_object(self, node: _Node, value: dict[str, Any], path: str) -> None:
        props = node.props
        prefix = f"{path}." if path else ""
        gopath = _strip_indices(path)
        goprefix = f"{gopath}." if gopath else ""
        items: Any = value.pairs if isinstance(value, _DupObject) else value.items()
        seen: set[str] | None = set() if isinstance(value, _DupObject) else None
        for key, v in items:
            if seen is not None:
                if key in seen:
                    p = prefix + key
                    self.issues.append(FieldIssue("duplicate", p, f'duplicate field "{p}"'))
                    continue
                seen.add(key)
                v = value[key]
            child = props.get(key)
            if child is None:
                p = prefix + key
                self.issues.append(FieldIssue("unknown", p, f'unknown field "{p}"'))
            elif v is not None and child.kind != _ANY:
                self.walk(child, v, prefix + key, node.struct, goprefix + key)


@functools.lru_cache(maxsize=8192)  # the same paths recur in every request of a kind
def _strip_indices(path: str) -> str:
    if "[" not in path:
        return path
    out: list[str] = []
    depth = 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def parse_with_duplicates(raw: bytes) -> Any:
    """Decode a JSON body keeping track of keys given twice, for check_fields."""
    return json.loads(raw, object_pairs_hook=_pairs_hook)


def check_fields(group: str, version: str, kind: str, obj: dict[str, Any],
                 raw: bytes | None = None, *, omit_empty: bool = False) -> list[FieldIssue]:
    """Unknown, duplicate and mistyped fields of ``obj`` against the kind's
    upstream schema, in document order. Duplicates can only be seen in the
    request body, so pass ``raw`` (the JSON bytes) to have them reported.
    A kind without an upstream schema (custom resources) yields no issues.
    ``omit_empty``: when nothing is found, also drop the fields Go's encoder
    would leave out as empty (see ``omit_empty``), on the same walk."""
    name = schema.definition_name(group, version, kind)
    if name is None:
        return []
    if raw is not None:
        return check_definition(name, parse_with_duplicates(raw))
    return _check(_def_node(name), obj, "", omit_empty)


def _clean(node: _Node, value: Any, omit: bool = False) -> bool:
    """True when ``_Walker`` would find nothing in ``value``: the walk that
    almost every request needs, without building a path per field. On the
    way it drops the fields of objects that are null: decoding into the Go
    type leaves them unset, and code past this point may rely on a field
    being either absent or of its type. With ``omit`` it drops the empty
    fields Go's encoder leaves out too (``omitempty``): a stored object is
    what encoding its Go type gives."""
    kind = node.kind
    if kind == _OBJ:
        if type(value) is not dict:  # a _DupObject too: the full walk reports it
            return False
        props = node.props
        drop = node.omit if omit else _NO_KEYS
        nulls: list[str] | None = None
        for key, v in value.items():
            child = props.get(key)
            if child is None:
                return False
            if v is None or (not v and key in drop and _empty_ok(child, v)):
                nulls = [key] if nulls is None else [*nulls, key]
            elif child.kind != _ANY and not _clean(child, v, omit):
                return False
        if nulls:
            for key in nulls:
                del value[key]
        return True
    if kind == _ARR:
        if type(value) is not list:
            return False
        item = node.item
        assert item is not None
        if item.kind in _ZERO:
            return all(v is not None and _scalar_ok(item.kind, v) for v in value)
        return all(v is None or _clean(item, v, omit) for v in value)
    if kind == _MAP:
        if type(value) is not dict:
            return False
        item = node.item
        assert item is not None
        if item.kind in _ZERO:
            return all(v is not None and _scalar_ok(item.kind, v) for v in value.values())
        return item.kind == _ANY or all(v is None or _clean(item, v, omit)
                                        for v in value.values())
    return _scalar_ok(kind, value)


def _empty_ok(node: _Node, v: Any) -> bool:
    """Whether an empty (falsy) JSON value is of the field's type: a zero of
    the wrong type is the decoder's error to report, not a field to drop."""
    if node.kind == _ARR:
        return type(v) is list
    if node.kind == _MAP:
        return type(v) is dict
    return _scalar_ok(node.kind, v)


def _scalar_ok(kind: int, value: Any) -> bool:
    """Whether a JSON scalar decodes into a Go field of this kind."""
    t = type(value)
    if kind == _STR:
        return t is str
    if kind == _INT:
        return t is int or (t is float and value.is_integer())
    if kind == _NUM:
        return t is int or t is float
    if kind == _BOOL:
        return t is bool
    if kind == _INTSTR or kind == _QTY:
        return t is str or t is int or t is float
    return True


def check_definition(name: str, value: Any, path: str = "") -> list[FieldIssue]:
    """Check ``value`` against one definition (e.g. ObjectMeta inside a custom
    resource); ``path`` is the field path of ``value`` in its object."""
    return _check(_def_node(name), value, path, False)


def _check(node: _Node, value: Any, path: str, omit: bool) -> list[FieldIssue]:
    if _clean(node, value, omit):
        return []
    w = _Walker()
    if node.kind == _OBJ and isinstance(value, dict):
        w.walk_object(node, value, path)
    else:
        w.walk(node, value, path, "", _strip_indices(path))
    return w.issues


def strict_issues(issues: list[FieldIssue]) -> list[FieldIssue]:
    """The issues that fieldValidation decides about (unknown and duplicate)."""
    return [i for i in issues if i.kind in ("unknown", "duplicate")]


def prune(group: str, version: str, kind: str, obj: dict[str, Any], *,
          omit_empty: bool = False) -> None:
    """Make ``obj`` what decoding it into the kind's Go type leaves: unknown
    fields dropped, nulls in lists and maps of scalars made zero values
    (and with ``omit_empty``, what encoding that leaves: see ``omit_empty``).
    In place; only for objects ``check_fields`` found issues in."""
    name = schema.definition_name(group, version, kind)
    if name is not None:
        _prune(_def_node(name), obj, omit_empty)


def omit_empty(group: str, version: str, kind: str, obj: dict[str, Any]) -> None:
    """Drop, in place, the fields that Go's JSON encoder leaves out of the
    kind's object (``omitempty``): zero numbers, false, "" and empty lists
    and maps, e.g. a Deployment's ``status.unavailableReplicas: 0``.
    kube-apiserver stores (and so serves) the encoding of its Go object, so
    they never appear; pointer fields keep a zero (``spec.replicas: 0``)."""
    name = schema.definition_name(group, version, kind)
    if name is not None:
        _prune(_def_node(name), obj, True, unknown=False)


def _prune(node: _Node, value: Any, omit: bool = False, unknown: bool = True) -> None:
    kind = node.kind
    if kind == _OBJ and isinstance(value, dict):
        props = node.props
        drop = node.omit if omit else _NO_KEYS
        for key in list(value):
            child = props.get(key)
            v = value[key]
            if child is None:
                if unknown:
                    del value[key]
            elif v is None or (not v and key in drop and _empty_ok(child, v)):
                del value[key]
            elif child.kind != _ANY:
                _prune(child, v, omit, unknown)
    elif kind in (_ARR, _MAP) and isinstance(value, (list, dict)):
        item = node.item
        assert item is not None
        if item.kind == _ANY:
            return
        keys = range(len(value)) if isinstance(value, list) else list(value)
        for k in keys:
            v = value[k]
            if v is None:
                if item.kind in _ZERO:
                    value[k] = _ZERO[item.kind]
            else:
                _prune(item, v, omit, unknown)


def strict_error_message(issues: list[FieldIssue]) -> str:
    """The 400 message body for fieldValidation=Strict, without the
    ``<Kind> in version "v1" cannot be handled as a <Kind>: `` prefix."""
    return "strict decoding error: " + ", ".join(i.message for i in strict_issues(issues))


def decode_error_message(kind: str, version: str, detail: str) -> str:
    """The BadRequest message the API server wraps decoding errors in."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}'
