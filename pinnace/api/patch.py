"""The three PATCH bodies the API accepts: JSON patch (RFC 6902), JSON merge
patch (RFC 7386) and Kubernetes' strategic merge patch.

Inputs are never mutated: every function returns a new top-level dict and
copies only the containers it changes, sharing untouched subtrees.

JSON patch follows the library Kubernetes uses (evanphx/json-patch v4),
including its messages and quirks: ``replace`` of a missing object member
adds it, negative array indices count from the end.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from pinnace.api import schema
from pinnace.api.jsoncopy import json_copy

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]


class PatchError(ValueError):
    """A patch that cannot be applied; the message reads like upstream's."""


# --------------------------------------------------------------------------
# RFC 6902 JSON patch

_MISSING = ": missing value"
_BAD_INDEX = ": invalid index referenced"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _index(key: str, length: int, extra: int, what: str) -> int:
    try:
        idx = int(key)
    except ValueError:
        raise PatchError(f'strconv.Atoi: parsing "{key}": invalid syntax') from None
    if idx >= length + extra or idx < -(length + extra):
        raise PatchError(f"Unable to access invalid index: {idx}{_BAD_INDEX}")
    return idx + length + extra if idx < 0 else idx


def _copy_container(c: Any) -> Any:
    return dict(c) if isinstance(c, dict) else list(c)


def _find_parent(doc: Any, path: str) -> tuple[list[Any], str] | None:
    """Copy-on-write descent to the parent of ``path``: returns the chain of
    (already copied) containers from the root and the last token, or None
    when some part of the path is missing (upstream: "doc is missing path")."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0]:
        # RFC 6901: a pointer is "" or starts with "/" ("data/k9" points nowhere).
        return None
    chain = [doc]
    cur = doc
    for raw in parts[1:-1]:
        tok = _unescape(raw)
        if isinstance(cur, dict):
            nxt = cur.get(tok)
        elif isinstance(cur, list):
            try:
                i = int(tok)
            except ValueError:
                return None
            if not -len(cur) <= i < len(cur):
                return None
            nxt = cur[i]
            tok = str(i % len(cur))
        else:
            return None
        if not isinstance(nxt, (dict, list)):
            return None
        nxt = _copy_container(nxt)
        if isinstance(cur, dict):
            cur[tok] = nxt
        else:
            cur[int(tok)] = nxt
        chain.append(nxt)
        cur = nxt
    return chain, _unescape(parts[-1])


def _get(con: Any, key: str) -> tuple[bool, Any]:
    if isinstance(con, dict):
        return (key in con), con.get(key)
    idx = _index(key, len(con), 0, "get")
    return True, con[idx]


def _add(con: Any, key: str, value: Any) -> None:
    if isinstance(con, dict):
        con[key] = value
    elif key == "-":
        con.append(value)
    else:
        try:
            idx = _index(key, len(con), 1, "add")
        except PatchError as e:
            if str(e).startswith("strconv"):
                raise PatchError(f"value was not a proper array index: '{key}': {e}") from None
            raise
        con.insert(idx, value)


def _remove(con: Any, key: str) -> Any:
    if isinstance(con, dict):
        if key not in con:
            raise PatchError(f"Unable to remove nonexistent key: {key}{_MISSING}")
        return con.pop(key)
    return con.pop(_index(key, len(con), 0, "remove"))


def _op_str(op: dict[str, Any], field: str, kind: str) -> str:
    v = op.get(field)
    if not isinstance(v, str):
        if field == "path":
            raise PatchError(f"{kind} operation failed to decode path: "
                             "operation missing path field" + _MISSING)
        raise PatchError(f"{kind} operation failed to decode from: "
                         "operation, missing from field" + _MISSING)
    return v


def json_patch(obj: dict, ops: list) -> dict:
    """Apply an RFC 6902 patch; raises PatchError like evanphx/json-patch."""
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc: Any = dict(obj)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("json: cannot unmarshal into Go value of type jsonpatch.Operation")
        kind = op.get("op")
        kind = kind if isinstance(kind, str) else "unknown"
        if kind == "add":
            path = _op_str(op, "path", kind)
            found = _find_parent(doc, path)
            if found is None:
                raise PatchError(f'add operation does not apply: doc is missing path: "{path}"'
                                 + _MISSING)
            chain, key = found
            try:
                _add(chain[-1], key, copy.deepcopy(op.get("value")))
            except PatchError as e:
                raise PatchError(f"error in add for path: '{path}': {e}") from None
            doc = chain[0]
        elif kind == "remove":
            path = _op_str(op, "path", kind)
            found = _find_parent(doc, path)
            if found is None:
                raise PatchError(
                    f'remove operation does not apply: doc is missing path: "{path}"' + _MISSING)
            chain, key = found
            try:
                _remove(chain[-1], key)
            except PatchError as e:
                raise PatchError(f"error in remove for path: '{path}': {e}") from None
            doc = chain[0]
        elif kind == "replace":
            path = _op_str(op, "path", kind)
            found = _find_parent(doc, path)
            if found is None:
                raise PatchError(
                    f"replace operation does not apply: doc is missing path: {path}" + _MISSING)
            chain, key = found
            con = chain[-1]
            if isinstance(con, list):
                try:
                    idx = _index(key, len(con), 0, "replace")
                except PatchError:
                    raise PatchError("replace operation does not apply: doc is missing key: "
                                     f"{path}" + _MISSING) from None
                con[idx] = copy.deepcopy(op.get("value"))
            else:
                con[key] = copy.deepcopy(op.get("value"))
            doc = chain[0]
        elif kind in ("move", "copy"):
            frm = _op_str(op, "from", kind)
            path = _op_str(op, "path", kind)
            found = _find_parent(doc, frm)
            if found is None:
                raise PatchError(f"{kind} operation does not apply: doc is missing from path: "
                                 f"{frm}" + _MISSING)
            chain, key = found
            try:
                present, val = _get(chain[-1], key)
                if not present:  # RFC 6902: "from" must exist
                    raise PatchError(f"Unable to get nonexistent key: {key}{_MISSING}")
                if kind == "move":
                    _remove(chain[-1], key)
            except PatchError as e:
                where = f"path: '{key}'" if kind == "move" else f"from: '{frm}'"
                raise PatchError(f"error in {kind} for {where}: {e}") from None
            doc = chain[0]
            found = _find_parent(doc, path)
            if found is None:
                raise PatchError(f"{kind} operation does not apply: doc is missing destination "
                                 f"path: {path}" + _MISSING)
            chain, key = found
            try:
                _add(chain[-1], key, copy.deepcopy(val))
            except PatchError as e:
                where = f"error in move for path: '{path}'" if kind == "move" else \
                    "error while adding value during copy"
                raise PatchError(f"{where}: {e}") from None
            doc = chain[0]
        elif kind == "test":
            path = _op_str(op, "path", kind)
            found = _find_parent(doc, path)
            if found is None:
                raise PatchError(f"test operation does not apply: is missing path: {path}"
                                 + _MISSING)
            chain, key = found
            try:
                _, val = _get(chain[-1], key)
            except PatchError as e:
                raise PatchError(f"error in test for path: '{path}': {e}") from None
            if not _json_equal(val, op.get("value")):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    if not isinstance(doc, dict):
        raise PatchError("json: cannot unmarshal array into Go value of type map[string]interface {}")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: unlike Python, true is not 1 (but 1 is 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(_json_equal(x, y) for x, y in zip(a, b)))
    return bool(a == b)


# --------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def merge_patch(obj: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    out = dict(obj) if isinstance(obj, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            out[k] = merge_patch(out.get(k), v)
        else:
            out[k] = json_copy(v)
    return out


# --------------------------------------------------------------------------
# Strategic merge patch

_PATCH = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIM = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


def _field(node: dict | None, key: str) -> tuple[dict | None, dict | None]:
    """(property node as written, resolved type) for ``key`` of an object
    schema; the property node carries the patch annotations."""
    if node is None:
        return None, None
    props = node.get("properties")
    if props is not None and key in props:
        p = props[key]
        return p, schema.resolve(p)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra, schema.resolve(extra)
    return None, None


def _strategy(p: dict | None) -> set[str]:
    s = (p or {}).get("x-kubernetes-patch-strategy")
    return set(s.split(",")) if s else set()


def _go_map(m: dict) -> str:
    # How Go's %v prints a map: map[k:v k2:v2] with sorted keys.
    inner = " ".join(f"{k}:{_go_val(m[k])}" for k in sorted(m))
    return f"map[{inner}]"


def _go_type(v: Any) -> str:
    """The Go type a JSON value decodes to, as reflect prints it."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "int64" if isinstance(v, int) else "float64"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "string"


def _go_val(v: Any) -> str:
    if isinstance(v, dict):
        return _go_map(v)
    if isinstance(v, list):
        return "[" + " ".join(_go_val(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def strategic_merge_patch(obj: dict, patch: dict, schema_node: dict | None) -> dict:
    """Apply a strategic merge patch using the kind's schema for list
    strategies and merge keys. ``obj`` is not modified."""
    if not isinstance(patch, dict):
        raise PatchError("unable to find api field in struct for the patch: "
                         "patch must be a JSON object")
    out = _smp_map(obj if isinstance(obj, dict) else {}, patch, schema_node)
    return out if out is not None else {}


def _smp_map(orig: dict, patch: dict, node: dict | None) -> dict | None:
    """Merge ``patch`` into ``orig``; None means "delete this map"."""
    directive = patch.get(_PATCH)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip(patch, node)
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive} in map: {_go_map(patch)}")
    out = dict(orig)
    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(f"invalid type for $retainKeys: {_go_val(retain)}")
        for key in retain:
            if not isinstance(key, str):  # mergepatch.ErrBadArgType
                raise PatchError(f"expected a string, but received a {_go_type(key)}")
        keep = set(retain)
        for k in list(out):
            if k not in keep:
                del out[k]
    # Deletions from primitive lists apply before the list's own merge.
    for k, v in patch.items():
        if k.startswith(_DELETE_PRIM):
            field = k[len(_DELETE_PRIM):]
            cur = out.get(field)
            if isinstance(cur, list) and isinstance(v, list):
                gone = v
                out[field] = [x for x in cur if x not in gone]
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        p, t = _field(node, k)
        if v is None:
            out.pop(k, None)
            continue
        cur = out.get(k)
        if isinstance(v, dict):
            sub = _smp_map(cur if isinstance(cur, dict) else {}, v, t)
            if sub is None:
                out.pop(k, None)
            else:
                out[k] = sub
        elif isinstance(v, list):
            order = patch.get(_ORDER + k)
            merged = _smp_list(cur if isinstance(cur, list) else [], v, p, t, k)
            if order is not None:
                merged = _reorder(merged, order, p, cur if isinstance(cur, list) else [])
            out[k] = merged
        else:
            out[k] = v
    # An order given for a list the patch did not otherwise touch.
    for k, order in patch.items():
        if k.startswith(_ORDER):
            field = k[len(_ORDER):]
            if field not in patch and isinstance(out.get(field), list):
                p, _ = _field(node, field)
                out[field] = _reorder(out[field], order, p, out[field])
    return out


def _strip(v: Any, node: dict | None) -> Any:
    """A patch value taken as-is: drop directives and nulls (a value
    absent from the original is the patch merged into nothing)."""
    if isinstance(v, dict):
        r = _smp_map({}, {k: x for k, x in v.items() if k != _PATCH}, node)
        return r if r is not None else {}
    return v


def _merge_key_of(p: dict | None) -> str | None:
    return (p or {}).get("x-kubernetes-patch-merge-key")


def _smp_list(orig: list, patch: list, p: dict | None, t: dict | None, name: str) -> list:
    item_t = schema.resolve(t["items"]) if t and isinstance(t.get("items"), dict) else None
    # {"$patch": "replace"} inside a list replaces the whole list.
    replace = any(isinstance(e, dict) and e.get(_PATCH) == "replace" for e in patch)
    if replace:
        return [_strip(e, item_t) for e in patch
                if not (isinstance(e, dict) and _PATCH in e and len(e) == 1)]
    if "merge" not in _strategy(p):
        return [_strip(e, item_t) for e in patch]
    key = _merge_key_of(p)
    if key is None or not any(isinstance(e, dict) for e in patch + orig):
        # Primitive list with merge strategy: a union that keeps order.
        out = list(orig)
        for e in patch:
            if isinstance(e, dict) and e.get(_PATCH) == "delete":
                continue
            if e not in out:
                out.append(e)
        return out
    out = list(orig)
    for e in patch:
        if not isinstance(e, dict):
            raise PatchError(f"invalid type for merge list element: {_go_val(e)}")
        if key not in e:
            raise PatchError(f"map: {_go_map(e)} does not contain declared merge key: {key}")
        pos = next((i for i, o in enumerate(out)
                    if isinstance(o, dict) and o.get(key) == e[key]), None)
        if e.get(_PATCH) == "delete":
            out = [o for o in out if not (isinstance(o, dict) and o.get(key) == e[key])]
            continue
        if pos is None:
            out.append(_strip(e, item_t))
        else:
            merged = _smp_map(out[pos], e, item_t)
            if merged is None:
                del out[pos]
            else:
                out[pos] = merged
    return out


def _ident(e: Any, key: str | None) -> Any:
    if key and isinstance(e, dict):
        return orjson.dumps(e.get(key), option=orjson.OPT_SORT_KEYS)
    return orjson.dumps(e, option=orjson.OPT_SORT_KEYS)


def _reorder(merged: list, order: list, p: dict | None, orig: list) -> list:
    """$setElementOrder: listed elements take the given order; elements the
    client did not list (added by others) keep their place relative to the
    listed ones as they stood in the original list."""
    key = _merge_key_of(p)
    by_id = {_ident(e, key): e for e in merged}
    wanted = [_ident(o, key) for o in order]
    wanted_set = set(wanted)
    orig_ids = [_ident(e, key) for e in orig]
    out: list = []
    placed: set = set()
    # Server-only elements are emitted just before the first listed element
    # that followed them in the original.
    pending = [i for i in orig_ids if i not in wanted_set and i in by_id]
    for w in wanted:
        if w not in by_id or w in placed:
            continue
        if w in orig_ids:
            wpos = orig_ids.index(w)
            while pending and orig_ids.index(pending[0]) < wpos:
                out.append(by_id[pending[0]])
                placed.add(pending.pop(0))
        out.append(by_id[w])
        placed.add(w)
    for i in pending:
        out.append(by_id[i])
        placed.add(i)
    for e in merged:
        i = _ident(e, key)
        if i not in placed:
            out.append(e)
            placed.add(i)
    return out
