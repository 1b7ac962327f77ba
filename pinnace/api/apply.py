"""Field ownership (metadata.managedFields) and server-side apply, with the
semantics of Kubernetes' structured-merge-diff.

Sets of field paths are kept as trees shaped like FieldsV1: keys are path
elements ("f:name", 'k:{"name":"web"}', 'v:"x"', "i:0") and the key "."
marks that the path itself is a member. Stored FieldsV1 writes a member
without children as ``{}``; internally it is always ``{".": {}}``.

Schemas are either upstream definitions (pinnace.api.schema: ``$ref``,
annotations on the property node) or a CRD's openAPIV3Schema; both use
properties / additionalProperties / items and x-kubernetes-* markers. With
no schema, maps are granular and lists atomic (upstream's "deduced" type).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from pinnace.api import schema

__all__ = [
    "MAX_UPDATE_MANAGERS",
    "ApplyConflict",
    "ApplyError",
    "KUBECTL",
    "LAST_APPLIED",
    "conflict_causes",
    "go_json",
    "manager_or_user_agent",
    "path_string",
    "server_side_apply",
    "track_update",
]

Tree = dict[str, Any]
_M = "."
_LEAF: Tree = {_M: {}}

# List-map key fields that upstream defaults (+default markers), used when an
# item omits them so keys agree with the stored, defaulted object.
_KEY_DEFAULTS = {"protocol": "TCP"}

# Non-pointer struct fields: present (empty) in the zero object upstream
# compares against on create, so they do not get their own "." entry.
_VALUE_STRUCTS = frozenset({"metadata", "spec", "status", "template", "strategy",
                            "updateStrategy", "jobTemplate", "loadBalancer"})


class ApplyError(ValueError):
    """A malformed apply request (the API answers 400 Bad Request)."""


class ApplyConflict(Exception):
    """Another manager owns fields this apply would change.

    ``conflicts`` holds (manager name, field path) pairs; ``described`` the
    same with the manager printed as upstream does (``"x" using apps/v1``).
    """

    def __init__(self, conflicts: list[tuple[str, str]],
                 described: list[tuple[str, str]] | None = None) -> None:
        self.conflicts = conflicts
        self.described = described or [(f'"{m}"', p) for m, p in conflicts]
        super().__init__(self.message)

    @property
    def message(self) -> str:
        d = self.described
        if len(d) == 1:
            return f"Apply failed with 1 conflict: conflict with {d[0][0]}: {d[0][1]}"
        by: dict[str, list[str]] = {}
        for who, path in d:
            by.setdefault(who, []).append(path)
        lines: list[str] = []
        for who in sorted(by):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for p in by[who])
        return f"Apply failed with {len(d)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict[str, str]]:
        return conflict_causes(self)


def conflict_causes(err: ApplyConflict) -> list[dict[str, str]]:
    """Status causes for the 409 answer, one per conflicting field."""
    return [{"reason": "FieldManagerConflict", "message": f"conflict with {who}",
             "field": path} for who, path in err.described]


# --------------------------------------------------------------------------
# Schema access


def _r(p: dict | None) -> dict | None:
    return schema.resolve(p) if p is not None else None


def _ann(p: dict | None, name: str) -> Any:
    if p is None:
        return None
    v = p.get(name)
    if v is None and "$ref" in p:
        v = schema.resolve(p).get(name)
    return v


def _child(t: dict | None, key: str) -> tuple[dict | None, bool]:
    """(schema of field ``key`` of resolved object type ``t``, is a named field)."""
    if t is None:
        return None, False
    props = t.get("properties")
    if props is not None:
        p = props.get(key)
        if p is not None:
            return p, True
    extra = t.get("additionalProperties")
    if isinstance(extra, dict):
        return extra, False
    return None, False


def _items(t: dict | None) -> dict | None:
    if t is None:
        return None
    it = t.get("items")
    return it if isinstance(it, dict) else None


def _list_kind(p: dict | None) -> tuple[str, list[str]]:
    """("atomic" | "set" | "map", map keys) for a list schema."""
    if p is None:
        return "atomic", []
    lt = p.get("x-kubernetes-list-type")
    mk = p.get("x-kubernetes-patch-merge-key")
    if lt == "map":
        return "map", list(p.get("x-kubernetes-list-map-keys") or ([mk] if mk else []))
    if lt in ("set", "atomic"):
        return lt, []
    # Built-in lists without a list-type follow their patch strategy.
    strat = p.get("x-kubernetes-patch-strategy") or ""
    if "merge" in strat.split(","):
        return ("map", [mk]) if mk else ("set", [])
    return "atomic", []


class _Node:
    """What field tracking asks of one schema node, worked out once per node."""

    __slots__ = ("_extra_node", "_item_node", "_kids", "atomic_map", "extra", "items", "keys",
                 "list_kind", "props", "schema")

    def __init__(self, p: dict | None) -> None:
        self.schema = p  # keeps p alive, so its id stays its own while cached
        t = _r(p)
        props = t.get("properties") if t is not None else None
        self.props: dict = props if isinstance(props, dict) else {}
        extra = t.get("additionalProperties") if t is not None else None
        self.extra: dict | None = extra if isinstance(extra, dict) else None
        self.atomic_map = _is_atomic_map(p, t)
        self.list_kind, self.keys = _list_kind(p)
        self.items = _items(t)

        self._kids: dict[str, _Node] = {}
        self._extra_node: _Node | None = None
        self._item_node: _Node | None = None

    def child(self, key: str) -> dict | None:
        p = self.props.get(key)
        return p if p is not None else self.extra

    def kid(self, key: str) -> _Node:
        """The node of field ``key`` (remembered for declared fields only:
        map keys come from user data and are not bounded)."""
        n = self._kids.get(key)
        if n is not None:
            return n
        p = self.props.get(key)
        if p is not None:
            n = self._kids[key] = _node(p)
            return n
        if self._extra_node is None:
            self._extra_node = _node(self.extra)
        return self._extra_node

    def item_node(self) -> _Node:
        """The node of a list's items, as tracking sees them (only map items
        have structure of their own)."""
        if self._item_node is None:
            self._item_node = _node(self.items if self.list_kind == "map" else None)
        return self._item_node

    def granular(self, v: Any) -> bool:
        return self.list_kind != "atomic" if isinstance(v, list) else not self.atomic_map


_NODES: dict[int, _Node] = {}


def _node(p: dict | None) -> _Node:
    if p is None:
        return _NO_SCHEMA
    n = _NODES.get(id(p))
    if n is None or n.schema is not p:
        if len(_NODES) > 100_000:  # schemas of deleted CRDs, say
            _NODES.clear()
        n = _NODES[id(p)] = _Node(p)
    return n


def _is_atomic_map(p: dict | None, t: dict | None) -> bool:
    if p is None:
        return False
    mt = p.get("x-kubernetes-map-type") or (t.get("x-kubernetes-map-type") if t else None)
    return mt == "atomic"


_NO_SCHEMA = _Node(None)


def _item_pe(item: Any, idx: int, kind: str, keys: list[str]) -> str:
    if kind == "set":
        return "v:" + orjson.dumps(item).decode()
    if isinstance(item, dict) and keys:
        kv = {}
        for k in keys:
            v = item.get(k)
            if v is None:
                v = _KEY_DEFAULTS.get(k)
            if v is not None:
                kv[k] = v
        if kv:
            return "k:" + orjson.dumps(kv, option=orjson.OPT_SORT_KEYS).decode()
    return f"i:{idx}"


def _eq(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b
    return bool(a == b)


# --------------------------------------------------------------------------
# Field sets


def _to_set(v: Any, p: dict | None, out: Tree) -> None:
    """Fill ``out`` with the fields of container ``v`` as an applied
    configuration claims them (upstream ToFieldSet)."""
    t = _r(p)
    if isinstance(v, dict):
        if _is_atomic_map(p, t):
            return
        for key, cv in v.items():
            cp, named = _child(t, key)
            node: Tree = {}
            if isinstance(cv, dict) and cv and not _is_atomic_map(cp, _r(cp)) or \
                    isinstance(cv, list) and _list_kind(cp)[0] != "atomic":
                _to_set(cv, cp, node)
                # Keys of granular maps are members; declared fields only
                # through what they hold (an empty list claims nothing).
                if not named:
                    node[_M] = {}
            else:
                node[_M] = {}
            if node:
                out["f:" + key] = node
    elif isinstance(v, list):
        kind, keys = _list_kind(p)
        ip = _items(t)
        for i, item in enumerate(v):
            node = {_M: {}}
            if isinstance(item, (dict, list)) and kind == "map":
                _to_set(item, ip, node)
            out[_item_pe(item, i, kind, keys)] = node


def _is_granular(v: Any, p: dict | None) -> bool:
    if isinstance(v, dict):
        return not _node(p).atomic_map
    if isinstance(v, list):
        return _node(p).list_kind != "atomic"
    return False


def _compare(old: Any, new: Any, p: dict | None, changed: Tree, removed: Tree) -> None:
    """Record, under the current node, the paths added or modified going
    from container ``old`` to ``new`` into ``changed`` and those removed
    into ``removed`` (upstream Compare: a non-leaf node present on one side
    only is itself a member)."""
    node = _node(p)
    if isinstance(new, dict) or isinstance(old, dict):
        o = old if isinstance(old, dict) else {}
        n = new if isinstance(new, dict) else {}
        if not o:
            _add_all(changed, n, node)
            return
        for key in n.keys() | o.keys():
            _compare_child("f:" + key, key in o, o.get(key), key in n, n.get(key),
                           node.child(key), changed, removed)
        return
    if not old:
        _add_all(changed, new or [], node)
        return
    kind, keys = node.list_kind, node.keys
    ip = node.items if kind == "map" else None
    o_items = {_item_pe(x, i, kind, keys): x for i, x in enumerate(old)}
    n_items = {_item_pe(x, i, kind, keys): x for i, x in enumerate(new or ())}
    for pe in n_items.keys() | o_items.keys():
        _compare_child(pe, pe in o_items, o_items.get(pe), pe in n_items, n_items.get(pe),
                       ip, changed, removed)


def _add_all(changed: Tree, v: dict | list, node: _Node) -> None:
    """What ``_compare`` finds in container ``v`` against nothing: every
    field in it is added, and each granular container in it is itself a
    member. The whole of a create goes through here, so it is kept short."""
    if isinstance(v, dict):
        for key, cv in v.items():
            if cv and isinstance(cv, (dict, list)):
                kn = node.kid(key)
                if kn.granular(cv):
                    sub: Tree = {_M: {}}
                    _add_all(sub, cv, kn)
                    changed["f:" + key] = sub
                    continue
            changed["f:" + key] = {_M: {}}
        return
    kind, keys = node.list_kind, node.keys
    inode = node.item_node()
    for i, x in enumerate(v):
        pe = _item_pe(x, i, kind, keys)
        if x and isinstance(x, (dict, list)) and inode.granular(x):
            sub = {_M: {}}
            _add_all(sub, x, inode)
            changed[pe] = sub
        else:
            changed[pe] = {_M: {}}


def _empty(v: Any) -> bool:
    return v is None or ((isinstance(v, (dict, list))) and not v)


def _compare_child(pe: str, in_old: bool, ov: Any, in_new: bool, nv: Any, cp: dict | None,
                   changed: Tree, removed: Tree) -> None:
    # Equal subtrees (most of an object on an update) compare in C, not by walking.
    if in_old and in_new and (ov is nv or (type(ov) is type(nv) and ov == nv)):
        return
    o_cont = isinstance(ov, (dict, list))
    n_cont = isinstance(nv, (dict, list))
    if (o_cont or n_cont) and not (_empty(ov) and _empty(nv)) and \
            (not o_cont or not n_cont or type(ov) is type(nv)) and \
            _is_granular(nv if n_cont else ov, cp):
        csub: Tree = {}
        rsub: Tree = {}
        _compare(ov if o_cont else None, nv if n_cont else None, cp, csub, rsub)
        # Only a node absent on one side is itself added or removed; an
        # explicit null counts as present (the zero object has them).
        if not in_old:
            csub[_M] = {}
        elif not in_new:
            rsub[_M] = {}
        if csub:
            changed[pe] = csub
        if rsub:
            removed[pe] = rsub
        return
    # A leaf: scalar, atomic, empty, or a change of type.
    if not in_old:
        changed[pe] = {_M: {}}
    elif not in_new:
        removed[pe] = {_M: {}}
    elif not _eq(ov, nv):
        changed[pe] = {_M: {}}


def _union(a: Tree, b: Tree) -> Tree:
    if not a:
        return b
    if not b:
        return a
    out = dict(a)
    for k, v in b.items():
        if k in out:
            out[k] = _union(out[k], v) if k != _M else {}
        else:
            out[k] = v
    return out


def _difference(a: Tree, b: Tree) -> Tree:
    """Members of ``a`` that are not members of ``b``."""
    if not b:
        return a
    out: Tree = {}
    for k, v in a.items():
        if k == _M:
            if _M not in b:
                out[_M] = {}
            continue
        bv = b.get(k)
        if bv is None:
            out[k] = v
        else:
            d = _difference(v, bv)
            if d:
                out[k] = d
    return out


def _intersection(a: Tree, b: Tree) -> Tree:
    out: Tree = {}
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    for k, v in small.items():
        bv = big.get(k)
        if bv is None:
            continue
        if k == _M:
            out[_M] = {}
        else:
            i = _intersection(v, bv)
            if i:
                out[k] = i
    return out


def _ensure_named(s: Tree, p: dict | None) -> Tree:
    """Make every declared struct field with owned children a member too,
    so removing it removes the whole field (EnsureNamedFieldsAreMembers)."""
    t = _r(p)
    out: Tree = {}
    for k, v in s.items():
        if k == _M:
            out[k] = v
            continue
        if k.startswith("f:"):
            cp, named = _child(t, k[2:])
        else:
            cp, named = _items(t), False
        sub = _ensure_named(v, cp) if v else v
        if named and sub and _M not in sub:
            sub = {**sub, _M: {}}
        out[k] = sub
    return out


def _members(s: Tree, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Member paths in upstream's order: a node's members, then its children."""
    keys = sorted(k for k in s if k != _M)
    for k in keys:
        if _M in s[k]:
            yield prefix + (k,)
    for k in keys:
        yield from _members(s[k], prefix + (k,))


def path_string(path: Iterable[str]) -> str:
    """A field path as upstream prints it: .spec.containers[name="web"].image"""
    parts: list[str] = []
    for pe in path:
        kind, _, rest = pe.partition(":")
        if kind == "f":
            parts.append("." + rest)
        elif kind == "k":
            kv = orjson.loads(rest)
            parts.append("[" + ",".join(f"{k}={orjson.dumps(v).decode()}"
                                        for k, v in kv.items()) + "]")
        elif kind == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


# --------------------------------------------------------------------------
# FieldsV1 encoding and managedFields entries


def _from_v1(d: Any) -> Tree:
    if not isinstance(d, dict) or not d:
        return {_M: {}}
    return {k: ({} if k == _M else _from_v1(v)) for k, v in d.items()}


def _to_v1(s: Tree) -> dict:
    out: dict = {}
    for k in sorted(s):
        v = s[k]
        if k == _M or len(v) == 1 and _M in v:
            out[k] = {}
        else:
            out[k] = _to_v1(v)
    return out


# Paths never owned (upstream's strip set); removed as members only.
_STRIP_META = ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
               "generation", "resourceVersion")


def _strip(s: Tree, reset: Iterable[tuple[str, ...]] | None) -> Tree:
    if not s:
        return s
    out = dict(s)
    out.pop("f:apiVersion", None)
    out.pop("f:kind", None)
    meta = out.get("f:metadata")
    if meta is not None:
        meta = {k: v for k, v in meta.items() if k not in (_M, "f:managedFields")}
        for f in _STRIP_META:
            c = meta.get("f:" + f)
            if c is not None:
                c = {k: v for k, v in c.items() if k != _M}
                if c:
                    meta["f:" + f] = c
                else:
                    del meta["f:" + f]
        if meta:
            out["f:metadata"] = meta
        else:
            del out["f:metadata"]
    for path in reset or ():
        out = _drop_path(out, ["f:" + x for x in path])
    return out


def _drop_value(obj: dict, path: tuple[str, ...]) -> dict:
    """``obj`` without the value at ``path`` (fields reset by the strategy
    cannot be applied through this endpoint)."""
    head = path[0]
    if head not in obj:
        return obj
    out = dict(obj)
    if len(path) == 1:
        del out[head]
    elif isinstance(out[head], dict):
        out[head] = _drop_value(out[head], path[1:])
    return out


def _drop_path(s: Tree, path: list[str]) -> Tree:
    head = path[0]
    if head not in s:
        return s
    out = dict(s)
    if len(path) == 1:
        del out[head]
    else:
        sub = _drop_path(out[head], path[1:])
        if sub:
            out[head] = sub
        else:
            del out[head]
    return out


_NEVER_PRUNED: Tree = {
    "f:apiVersion": _LEAF, "f:kind": _LEAF,
    "f:metadata": {_M: {}, **{"f:" + f: _LEAF for f in _STRIP_META + ("managedFields",)}},
}

_Key = tuple[str, str, str, str]  # manager, operation, apiVersion ("" for Apply), subresource


class _Entry:
    __slots__ = (
        "api_version",
        "dirty",
        "manager",
        "operation",
        "raw",
        "set",
        "subresource",
        "time",
    )

    def __init__(self, manager: str, operation: str, api_version: str, subresource: str,
                 time: str | None, fields: Tree, raw: dict | None = None) -> None:
        self.manager = manager
        self.operation = operation
        self.api_version = api_version
        self.subresource = subresource
        self.time = time
        self.set = fields
        self.raw = raw  # the stored entry, reused when nothing changed
        self.dirty = raw is None

    @property
    def key(self) -> _Key:
        return (self.manager, self.operation,
                "" if self.operation == "Apply" else self.api_version, self.subresource)

    def describe(self) -> str:
        s = orjson.dumps(self.manager).decode()
        if self.subresource:
            s += f' with subresource {orjson.dumps(self.subresource).decode()}'
        if self.operation == "Update":
            s += f" using {self.api_version}"
        return s

    def encode(self) -> dict:
        if self.raw is not None and not self.dirty:
            return self.raw
        e: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                             "apiVersion": self.api_version}
        if self.time is not None:
            e["time"] = self.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = _to_v1(self.set)
        if self.subresource:
            e["subresource"] = self.subresource
        return e


def _decode(entries: Any) -> dict[_Key, _Entry] | None:
    """Stored managedFields by manager identity; None when malformed."""
    if not isinstance(entries, list):
        return None
    out: dict[_Key, _Entry] = {}
    for e in entries:
        if not isinstance(e, dict):
            return None
        if e.get("fieldsType", "FieldsV1") != "FieldsV1" and e.get("fieldsV1") is not None:
            return None
        op = e.get("operation") or ""
        if op not in ("Apply", "Update", ""):
            return None
        ent = _Entry(e.get("manager") or "", op, e.get("apiVersion") or "",
                     e.get("subresource") or "", e.get("time"),
                     _from_v1(e.get("fieldsV1")) if e.get("fieldsV1") else {}, e)
        prev = out.get(ent.key)
        if prev is not None:
            prev.set = _union(prev.set, ent.set)
            prev.dirty = True
        else:
            out[ent.key] = ent
    return out


def _encode(entries: dict[_Key, _Entry]) -> list[dict]:
    live = [e for e in entries.values() if e.set]
    live.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version,
                             e.subresource))
    return [e.encode() for e in live]


def _with_managed(obj: dict, managed: list[dict]) -> dict:
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    if managed:
        meta["managedFields"] = managed
    else:
        meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


_OBJECT_META = {"$ref": schema.REF_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


def _root(schema_node: dict | None) -> dict | None:
    """A CRD's openAPIV3Schema rarely describes metadata; the API server
    types it as ObjectMeta all the same."""
    if schema_node is None:
        return None
    props = schema_node.get("properties")
    if props is not None and "metadata" in props:
        return schema_node
    # The same dict every time, so what is worked out about it is kept.
    got = _ROOTS.get(id(schema_node))
    if got is None or got[0] is not schema_node:
        if len(_ROOTS) > 10_000:
            _ROOTS.clear()
        got = _ROOTS[id(schema_node)] = (schema_node, {
            **schema_node, "properties": {**(props or {}), "metadata": _OBJECT_META}})
    return got[1]


_ROOTS: dict[int, tuple[dict, dict]] = {}


def _is_builtin(p: dict | None) -> bool:
    return p is not None and "x-kubernetes-group-version-kind" in p


_ZEROS: dict[int, tuple[dict, dict]] = {}


def _zero(p: dict | None) -> dict:
    """The parts of a zero-valued built-in object that exist before any
    field is set (non-pointer structs); custom resources start empty.
    Callers only read it, so it is made once per schema."""
    if not _is_builtin(p):
        return {}
    assert p is not None
    got = _ZEROS.get(id(p))
    if got is None or got[0] is not p:
        got = _ZEROS[id(p)] = (p, _zero_struct(p))
    return got[1]


def _zero_struct(t: dict | None) -> dict:
    # Fields serialized without omitempty are the schema's required ones;
    # in a zero object they are null.
    out: dict = {name: None for name in (t or {}).get("required") or ()}
    for name, cp in ((t or {}).get("properties") or {}).items():
        if name in _VALUE_STRUCTS:
            ct = _r(cp)
            if ct is not None and ct.get("properties") and not ct.get("x-kubernetes-map-type"):
                out[name] = _zero_struct(ct) if name != "metadata" else {}
    return out


# --------------------------------------------------------------------------
# Update tracking


def track_update(old: dict | None, new: dict, manager: str, operation: str,
                 api_version: str, schema_node: dict | None, now: str, *,
                 subresource: str = "",
                 reset_fields: Iterable[tuple[str, ...]] | None = None) -> dict:
    """``new`` with managedFields updated for a create (old None), update or
    non-apply patch by ``manager``: it takes the fields it changed from
    everyone else; fields it removed leave every manager's set."""
    schema_node = _root(schema_node)
    new_meta = new.get("metadata") or {}
    entries = None
    if not subresource and new_meta.get("managedFields"):
        entries = _decode(new_meta["managedFields"])
    if not entries:
        entries = _decode(((old or {}).get("metadata") or {}).get("managedFields") or []) or {}
    base = old if old is not None else _zero(schema_node)
    changed: Tree = {}
    removed: Tree = {}
    _compare(base, new, schema_node, changed, removed)
    changed = _strip(changed, reset_fields)
    removed = _strip(removed, reset_fields)
    gone = _union(changed, removed)
    if gone:
        for e in entries.values():
            d = _difference(e.set, gone)
            if d is not e.set and d != e.set:
                e.set = d
                e.dirty = True
    if changed:
        key = (manager, operation, "" if operation == "Apply" else api_version, subresource)
        mine = entries.get(key)
        if mine is None:
            entries[key] = _Entry(manager, operation, api_version, subresource, now, changed)
        else:
            mine.set = _union(mine.set, changed)
            mine.time = now
            mine.api_version = api_version
            mine.dirty = True
    _cap_updaters(entries)
    return _with_managed(new, _encode(entries))


# -- the scale subresource (managedfields.ScaleHandler) ------------------------

_SCALE_REPLICAS = ("spec", "replicas")


def _path_set(path: Iterable[str]) -> Tree:
    out: Tree = {_M: {}}
    for name in reversed(tuple(path)):
        out = {"f:" + name: out}
    return out


def _owns(s: Tree, path: Iterable[str]) -> bool:
    for name in path:
        s = s.get("f:" + name)  # type: ignore[assignment]
        if s is None:
            return False
    return _M in s


def scale_view(parent: list[dict] | None, replicas_path: tuple[str, ...]) -> list[dict]:
    """ScaleHandler.ToSubresource: the parent's managedFields as its Scale
    sees them. Each manager owning the replicas field owns the Scale's
    spec.replicas instead, under the same identity (manager, operation,
    apiVersion and subresource), so that a conflict names it as it is."""
    out = []
    for e in (_decode(parent or []) or {}).values():
        if _owns(e.set, replicas_path):
            out.append(_Entry(e.manager, e.operation, e.api_version, e.subresource, e.time,
                              _path_set(_SCALE_REPLICAS)).encode())
    return out


def scale_to_parent(parent: list[dict] | None, scale: list[dict] | None,
                    replicas_path: tuple[str, ...], api_version: str, now: str) -> list[dict]:
    """ScaleHandler.ToParent: the parent's managedFields after a write to its
    Scale whose managedFields came out as ``scale``. A manager the Scale no
    longer lists loses the replicas field; a new one (the writer, with
    ``subresource: scale``) owns it in the parent's ``api_version``."""
    entries = _decode(parent or []) or {}
    viewed = _decode(scale or []) or {}
    for key, e in entries.items():
        if not _owns(e.set, replicas_path):
            continue
        v = viewed.pop(key, None)
        if v is None or not _owns(v.set, _SCALE_REPLICAS):
            e.set = _difference(e.set, _path_set(replicas_path))
            e.dirty = True
    for key, v in viewed.items():
        if _owns(v.set, _SCALE_REPLICAS):
            entries[key] = _Entry(v.manager, v.operation, api_version, v.subresource,
                                  v.time or now, _path_set(replicas_path))
    return _encode(entries)


MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"


def _cap_updaters(entries: dict[_Key, _Entry]) -> None:
    """Past ten Update entries, fold the oldest into one "ancient-changes"
    entry per apiVersion, as upstream does to bound managedFields."""
    updaters = [e for e in entries.values() if e.operation != "Apply" and e.set]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda e: (e.time or "", e.manager))
    count = len(updaters)
    first_of: dict[str, _Entry] = {}
    for e in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        first = first_of.get(e.api_version)
        if first is None:
            first_of[e.api_version] = e
            continue
        bkey: _Key = (ANCIENT_CHANGES, "Update", e.api_version, "")
        bucket = entries.get(bkey)
        if bucket is None:
            del entries[first.key]
            bucket = _Entry(ANCIENT_CHANGES, "Update", e.api_version, "", first.time, first.set)
            entries[bkey] = bucket
            first_of[e.api_version] = bucket
        bucket.set = _union(bucket.set, e.set)
        bucket.time = e.time
        bucket.dirty = True
        del entries[e.key]
        count -= 1


def manager_or_user_agent(manager: str | None, user_agent: str | None) -> str:
    """The field manager of a request: ``?fieldManager=`` or else the User-Agent
    up to its first "/" (printable characters, at most 128 bytes)."""
    if manager:
        return manager
    out: list[str] = []
    size = 0
    for ch in (user_agent or "").split("/")[0]:
        if not ch.isprintable():
            continue
        n = len(ch.encode())
        if size + n > 128:
            break
        out.append(ch)
        size += n
    return "".join(out)


# --------------------------------------------------------------------------
# Server-side apply


def _merge(live: Any, cfg: Any, p: dict | None) -> Any:
    """The applied configuration laid over the live value."""
    if isinstance(cfg, dict):
        t = _r(p)
        if not isinstance(live, dict) or _is_atomic_map(p, t):
            live = {}
        out = dict(live)
        for k, cv in cfg.items():
            if cv is None:
                out.pop(k, None)
                continue
            cp, _ = _child(t, k)
            out[k] = _merge(live.get(k), cv, cp)
        return out
    if isinstance(cfg, list):
        kind, keys = _list_kind(p)
        if kind == "atomic" or not isinstance(live, list):
            return [_merge(None, x, _items(_r(p))) if isinstance(x, dict) else x for x in cfg]
        return _merge_list(live, cfg, kind, keys, _items(_r(p)))
    return cfg


def _merge_list(live: list, cfg: list, kind: str, keys: list[str], ip: dict | None) -> list:
    """Merge associative lists as upstream does: items the configuration
    lists come in its order; live-only items keep their place relative to
    the items around them."""
    l_pes = [_item_pe(x, i, kind, keys) for i, x in enumerate(live)]
    r_pes = [_item_pe(x, i, kind, keys) for i, x in enumerate(cfg)]
    l_map = dict(zip(l_pes, live))
    r_set = set(r_pes)
    shared = [pe for pe in r_pes if pe in l_map]
    done: set[str] = set()
    out: list = []
    si = li = ri = 0
    n_l, n_r = len(l_pes), len(r_pes)

    def take_rhs() -> None:
        nonlocal ri, si
        pe = r_pes[ri]
        done.add(pe)
        item = cfg[ri]
        out.append(_merge(l_map.get(pe), item, ip) if kind == "map" else item)
        ri += 1
        if si < len(shared) and shared[si] == pe:
            si += 1

    while li < n_l or ri < n_r:
        if li < n_l and ri < n_r:
            pe = l_pes[li]
            if pe == r_pes[ri]:
                li += 1
                take_rhs()
                continue
            if pe in r_set and si < len(shared) and shared[si] != pe:
                li += 1  # wanted later, in the configuration's order
                continue
        if li < n_l:
            pe = l_pes[li]
            if pe not in r_set:
                out.append(live[li])
                li += 1
                continue
            if pe in done:
                li += 1
                continue
        if ri < n_r:
            take_rhs()
    return out


def _remove_items(v: Any, rm: Tree, p: dict | None) -> Any:
    """``v`` without the fields and items that are members of ``rm``."""
    if isinstance(v, dict):
        t = _r(p)
        out = dict(v)
        for k, sub in rm.items():
            if not k.startswith("f:"):
                continue
            key = k[2:]
            if key not in out:
                continue
            if _M in sub:
                del out[key]
            else:
                cp, _ = _child(t, key)
                out[key] = _remove_items(out[key], sub, cp)
        return out
    if isinstance(v, list):
        kind, keys = _list_kind(p)
        ip = _items(_r(p))
        res = []
        for i, item in enumerate(v):
            pe = _item_pe(item, i, kind, keys)
            sub = rm.get(pe)
            if sub is None:
                res.append(item)
            elif _M not in sub:
                res.append(_remove_items(item, sub, ip))
        return res
    return v


def _full_set(v: Any, p: dict | None) -> Tree:
    """Every field of ``v`` (what an update from nothing would record)."""
    changed: Tree = {}
    _compare(_zero(p), v, p, changed, {})
    return changed


def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool,
                      schema_node: dict | None, now: str, *, subresource: str = "",
                      reset_fields: Iterable[tuple[str, ...]] | None = None) -> dict:
    """The object after ``manager`` applies ``applied`` (a partial object) to
    ``live`` (None to create), with managedFields updated. Raises
    ApplyConflict when another manager owns a field whose value would change
    and ``force`` is false."""
    schema_node = _root(schema_node)
    meta = applied.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields"):
        raise ApplyError("metadata.managedFields must be nil")
    api_version = applied.get("apiVersion") or ""
    live_meta = (live or {}).get("metadata") or {}
    entries = _decode(live_meta.get("managedFields") or []) or {}
    if live is not None and not entries:
        # Objects never tracked: whoever wrote them so far owns everything.
        full = _strip(_full_set(live, schema_node), reset_fields)
        if full:
            e = _Entry("before-first-apply", "Update", api_version, subresource, now, full)
            entries[e.key] = e
    key: _Key = (manager, "Apply", "", subresource)
    mine = entries.get(key)
    last = mine.set if mine is not None else {}
    cfg = applied
    for path in reset_fields or ():
        cfg = _drop_value(cfg, path)
    new_set: Tree = {}
    _to_set(cfg, schema_node, new_set)
    new_set = _strip(new_set, reset_fields)
    base = live if live is not None else {}
    merged = _merge(base, cfg, schema_node)
    if mine is None:
        mine = _Entry(manager, "Apply", api_version, subresource, None, new_set)
        entries[key] = mine
    mine.set = new_set
    mine.api_version = api_version
    mine.dirty = True
    if last:
        # The request always carries apiVersion, kind and metadata.name, so
        # upstream's pruning never removes them (its applier set is not yet
        # stripped at that point); say so directly.
        owned: Tree = _NEVER_PRUNED
        for e in entries.values():
            owned = _union(owned, e.set)
        prune = _difference(_ensure_named(last, schema_node), _ensure_named(owned, schema_node))
        if prune:
            merged = _remove_items(merged, prune, schema_node)
    changed: Tree = {}
    removed: Tree = {}
    _compare(base if live is not None else _zero(schema_node), merged, schema_node,
             changed, removed)
    changed = _strip(changed, reset_fields)
    removed = _strip(removed, reset_fields)
    conflicts: list[tuple[_Entry, Tree]] = []
    for k, e in entries.items():
        if k == key:
            continue
        c = _intersection(e.set, changed)
        if c:
            conflicts.append((e, c))
    if conflicts and not force:
        refused = conflicts
        if manager == KUBECTL and live is not None:
            # kubectl taking over from its client-side apply: the fields its
            # last-applied annotation set, still as it set them, are its own.
            allowed = _last_applied_set(live, schema_node, api_version, reset_fields)
            if allowed:
                refused = [(e, d) for e, c in conflicts if (d := _difference(c, allowed))]
        if refused:
            pairs: list[tuple[str, str]] = []
            described: list[tuple[str, str]] = []
            for e, c in sorted(refused, key=lambda ec: ec[0].describe()):
                for path in _members(c):
                    pairs.append((e.manager, path_string(path)))
                    described.append((e.describe(), path_string(path)))
            raise ApplyConflict(pairs, described)
    for e, c in conflicts:
        e.set = _difference(e.set, c)
        e.dirty = True
    if removed:
        for k, e in entries.items():
            if k != key:
                d = _difference(e.set, removed)
                if d != e.set:
                    e.set = d
                    e.dirty = True
    if mine.time is None or live is None or changed or removed:
        mine.time = now
    out = _with_managed(merged, _encode(entries))
    if manager == KUBECTL:
        out = _update_last_applied(out, applied)
    return out


# --------------------------------------------------------------------------
# kubectl's client-side apply annotation, kept in step with server-side
# apply by the manager "kubectl" (upstream's lastAppliedManager and
# lastAppliedUpdater; any other manager name opts out)

KUBECTL = "kubectl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied_set(live: dict, schema_node: dict | None, api_version: str,
                      reset_fields: Iterable[tuple[str, ...]] | None) -> Tree | None:
    """The fields ``live``'s last-applied annotation sets that still hold
    the value it gave them; None without a usable annotation (absent, not
    JSON, or of another version than the apply)."""
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text or not isinstance(text, str):
        return None
    try:
        last = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return None
    fields: Tree = {}
    _to_set(last, schema_node, fields)
    changed: Tree = {}
    removed: Tree = {}
    _compare(last, live, schema_node, changed, removed)
    return _strip(_difference(_difference(fields, changed), removed), reset_fields)


def _update_last_applied(obj: dict, applied: dict) -> dict:
    """``obj`` with its last-applied annotation, when it has one, rewritten
    to the applied configuration (without that annotation), encoded as
    kubectl's Go encoder writes it."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if not annotations.get(LAST_APPLIED):
        return obj
    cfg = dict(applied)
    cfg_meta = cfg.get("metadata")
    if isinstance(cfg_meta, dict) and isinstance(cfg_meta.get("annotations"), dict):
        cfg_anns = {k: v for k, v in cfg_meta["annotations"].items() if k != LAST_APPLIED}
        cfg["metadata"] = {**cfg_meta, "annotations": cfg_anns}
    annotations = {**annotations, LAST_APPLIED: go_json(cfg)}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                             "\u2028": "\\u2028", "\u2029": "\\u2029"})


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json Encoder writes a decoded document: keys
    sorted, compact, HTML characters escaped, whole numbers without a
    fraction, a newline at the end."""
    text = json.dumps(_go_numbers(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return text.translate(_GO_ESCAPES) + "\n"


def _go_numbers(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _go_numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_go_numbers(x) for x in v]
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    return v
