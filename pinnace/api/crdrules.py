"""CRD validation rules (``x-kubernetes-validations``), as kube-apiserver's
apiextensions-apiserver runs them.

A rule is a CEL expression over ``self``, the value at its schema node
(objects as maps; at a resource root, and in embedded resources, only
``apiVersion``, ``kind`` and ``metadata.name``/``generateName`` of the
metadata; strings of format date-time/date as timestamps, duration as
durations, byte as bytes). A rule naming ``oldSelf`` is a transition rule:
it runs on updates only, where the old object has a value at the same place
(map keys, and the keys of ``x-kubernetes-list-type: map`` lists, correlate;
other list items do not), unless ``optionalOldSelf`` makes ``oldSelf`` an
optional value. Ratcheting: a failing rule without oldSelf whose value is
unchanged from the old object is reported as a warning, not an error.

CEL itself is pinnace.api.cel (imported on first use: a server whose CRDs have
no rules never builds the grammar). No cost budget: see docs/decisions/0014-cel.md.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from pinnace.api import field
from pinnace.api.field import FieldError
from pinnace.runtime import lazy_import

cel = lazy_import("pinnace.api.cel")

Schema = dict[str, Any]
REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")
MAX_MESSAGE = 5 * 1024
BLOCKING = {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong",
            "FieldValueTooMany", "FieldValueTypeInvalid"}
NOT_CHECKED = ("some validation rules were not checked because the object was invalid; "
               "correct the existing errors to complete validation")


def has_rules(s: Any) -> bool:
    """Whether a schema (or any node under it) has x-kubernetes-validations."""
    if not isinstance(s, dict):
        return False
    if s.get("x-kubernetes-validations"):
        return True
    subs: list[Any] = list((s.get("properties") or {}).values())
    subs += [s.get("items"), s.get("additionalProperties")]
    subs += list(s.get("allOf") or ())
    return any(has_rules(x) for x in subs)


# ------------------------------------------------------------ rule field paths

def _path_tokens(path: str) -> Iterator[tuple[str, str]]:
    """('.', name) and ('[', name) steps of a rule's fieldPath."""
    i = 0
    while i < len(path):
        c = path[i]
        if c == ".":
            j = i + 1
            while j < len(path) and path[j] not in ".[]":
                j += 1
            if j == i + 1:
                raise ValueError("unexpected end of JSON path")
            yield ".", path[i + 1:j]
            i = j
        elif c == "[":
            m = re.match(r"\['((?:[^'\\]|\\.)*)'\]", path[i:])
            if not m:
                raise ValueError("expected single quoted string")
            yield "[", re.sub(r"\\(.)", r"\1", m.group(1))
            i += m.end()
        else:
            raise ValueError(f"expected [ or . but got: {c}")


def normalize_field_path(path: str, s: Schema) -> tuple[str, Schema]:
    """A rule's fieldPath (``.spec.x``, ``.m['k']``) as a field path relative
    to the rule's node, and the schema it reaches. ValueError when it does
    not refer to a field of the schema."""
    out = ""
    for _, name in _path_tokens(path.strip()):
        props = s.get("properties")
        if props is not None:
            if name not in props:
                raise ValueError("does not refer to a valid field")
            out = f"{out}.{name}" if out else name
            s = props[name]
        elif isinstance(s.get("additionalProperties"), dict):
            out = f"{out}[{name}]"
            s = s["additionalProperties"]
        else:
            raise ValueError("does not refer to a valid field")
    return out, s


def _child(path: str, sub: str) -> str:
    if not sub:
        return path
    if path in ("", "<nil>"):
        return sub
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


# ------------------------------------------------------------------- compiling

class Rule:
    __slots__ = ("spec", "program", "message_program", "uses_old", "field_path", "error")

    def __init__(self, spec: dict[str, Any], node: Schema):
        self.spec = spec
        self.program: Any = None
        self.message_program: Any = None
        self.uses_old = False
        self.field_path = ""
        self.error = ""
        text = str(spec.get("rule") or "").strip()
        if not text:
            return
        try:
            self.program = cel.compile_expression(text, ["self", "oldSelf"])
            self.uses_old = self.program.uses("oldSelf")
        except cel.CompileError as e:
            self.error = f"compilation failed: {e}"
            self.program = None
        msg = str(spec.get("messageExpression") or "").strip()
        if msg:
            try:
                self.message_program = cel.compile_expression(msg, ["self", "oldSelf"])
            except cel.CompileError:
                self.message_program = None
        if spec.get("fieldPath"):
            try:
                self.field_path = normalize_field_path(str(spec["fieldPath"]), node)[0]
            except ValueError:
                self.field_path = ""

    def error_string(self) -> str:
        msg = str(self.spec.get("message") or "").strip()
        return msg or str(self.spec.get("rule") or "").strip()

    def default_message(self) -> str:
        msg = str(self.spec.get("message") or "").strip()
        return msg or f"failed rule: {self.error_string()}"


class Node:
    """The rules of one schema node and of the nodes under it that have any."""

    __slots__ = ("schema", "rules", "properties", "items", "additional", "all_of",
                 "resource_root")

    def __init__(self, s: Schema, resource_root: bool):
        self.schema = s
        self.resource_root = resource_root
        self.rules = [Rule(r, s) for r in s.get("x-kubernetes-validations") or ()
                      if isinstance(r, dict)]
        self.properties = {k: n for k, sub in (s.get("properties") or {}).items()
                           if (n := build(sub, bool(sub.get("x-kubernetes-embedded-resource"))))}
        items = s.get("items")
        self.items = build(items, bool(items.get("x-kubernetes-embedded-resource"))) \
            if isinstance(items, dict) else None
        ap = s.get("additionalProperties")
        self.additional = build(ap, bool(ap.get("x-kubernetes-embedded-resource"))) \
            if isinstance(ap, dict) else None
        self.all_of = [n for sub in s.get("allOf") or () if (n := build(sub, resource_root))]


def build(s: Any, resource_root: bool = False) -> Node | None:
    if not has_rules(s):
        return None
    return Node(s, resource_root)


_cache: dict[int, tuple[Schema, Node | None]] = {}


def compiled(schema: Schema) -> Node | None:
    """The rule tree of a version's schema, compiled once per schema object."""
    hit = _cache.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_cache) > 512:
        _cache.clear()
    node = build(schema, True)
    _cache[id(schema)] = (schema, node)
    return node


# ------------------------------------------------------------------ values

def _value(s: Schema, v: Any, resource_root: bool = False) -> Any:
    """A JSON value as CEL sees it under schema ``s``."""
    if v is None:
        return None
    if isinstance(v, dict):
        props = s.get("properties") or {}
        ap = s.get("additionalProperties")
        out: dict[Any, Any] = {}
        for k, x in v.items():
            if resource_root and k == "metadata" and isinstance(x, dict):
                out[k] = cel.to_cel({m: x[m] for m in ("name", "generateName") if m in x})
                continue
            sub = props.get(k) if k in props else (ap if isinstance(ap, dict) else None)
            out[k] = _value(sub, x, bool(sub.get("x-kubernetes-embedded-resource"))) \
                if sub is not None else cel.to_cel(x)
        from celpy import celtypes
        return celtypes.MapType({celtypes.StringType(k): x for k, x in out.items()})
    if isinstance(v, list):
        items = s.get("items")
        if isinstance(items, dict):
            from celpy import celtypes
            return celtypes.ListType([_value(items, x) for x in v])
        return cel.to_cel(v)
    if isinstance(v, str) and s.get("type") == "string" and s.get("format"):
        from celpy import celtypes
        fmt = s["format"]
        try:
            if fmt == "date-time":
                return celtypes.TimestampType(v)
            if fmt == "date":
                return celtypes.TimestampType(datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=UTC))
            if fmt == "duration":
                return celtypes.DurationType(v)
            if fmt == "byte":
                return celtypes.BytesType(base64.b64decode(v))
        except Exception:  # a malformed value is reported by the format check
            return cel.to_cel(v)
    return cel.to_cel(v)


def same(a: Any, b: Any) -> bool:
    """JSON deep equality (true is not 1)."""
    if type(a) is not type(b):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
                and not isinstance(a, bool) and not isinstance(b, bool):
            return bool(a == b)
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ------------------------------------------------------------------ evaluating

_MISSING = object()


# Steps all of one object's rules may take together: ten times what one may
# (cel.STEP_LIMIT), as upstream's per-request budget is ten times its
# per-expression one.
OBJECT_STEPS = 500_000
OUT_OF_BUDGET = "validation failed due to running out of cost budget, no further validation " \
                "rules will be run"


class Result:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[str] = []
        self.budget: Any = None  # a cel.Budget, made with the first rule run


def validate(schema: Schema, obj: Any, old: Any = None, prior: list[FieldError] | None = None
             ) -> Result:
    """Run the rules of a custom resource's schema on ``obj`` (``old`` on an
    update). ``prior`` are the schema errors already found: one that stops
    evaluation (a wrong type, a missing required field...) leaves the rules
    unchecked, as upstream says."""
    res = Result()
    node = compiled(schema)
    if node is None:
        return res
    if prior and any(e.type in BLOCKING for e in prior):
        res.errors.append(field.invalid("<nil>", None, NOT_CHECKED))
        return res
    _walk(node, obj, old, "<nil>", False, res)
    return res


def _walk(node: Node, v: Any, old: Any, path: str, parent_unchanged: bool, res: Result) -> None:
    if v is None:
        return
    correlated = old is not None
    unchanged = same(v, old) if correlated else parent_unchanged
    if node.rules:
        _rules(node, v, old, path, unchanged, res)
    for sub in node.all_of:
        _walk_rules_only(sub, v, old, path, parent_unchanged, res)
    _children(node, v, old, path, unchanged if correlated else parent_unchanged, res)


def _walk_rules_only(node: Node, v: Any, old: Any, path: str, ratchet: bool, res: Result) -> None:
    if node.rules:
        _rules(node, v, old, path, ratchet, res)
    for sub in node.all_of:
        _walk_rules_only(sub, v, old, path, ratchet, res)
    _children(node, v, old, path, ratchet, res)


def _children(node: Node, v: Any, old: Any, path: str, unchanged: bool, res: Result) -> None:
    if isinstance(v, dict):
        old_map = old if isinstance(old, dict) else {}
        for k, x in v.items():
            sub = node.properties.get(k)
            if sub is not None:
                _walk(sub, x, old_map.get(k), _child(path, k), unchanged, res)
            elif node.additional is not None and not node.schema.get("properties"):
                _walk(node.additional, x, old_map.get(k), f"{path}[{k}]" if path != "<nil>"
                      else f"[{k}]", unchanged, res)
    elif isinstance(v, list) and node.items is not None:
        s = node.schema
        keys = s.get("x-kubernetes-list-map-keys") or []
        olds: dict[str, Any] = {}
        if s.get("x-kubernetes-list-type") == "map" and keys and isinstance(old, list):
            for x in old:
                if isinstance(x, dict):
                    olds[orjson.dumps([x.get(k) for k in keys]).decode()] = x
        for i, x in enumerate(v):
            ox = olds.get(orjson.dumps([x.get(k) for k in keys]).decode()) \
                if olds and isinstance(x, dict) else None
            _walk(node.items, x, ox, f"{path}[{i}]", unchanged, res)


def _rules(node: Node, v: Any, old: Any, path: str, ratchet: bool, res: Result) -> None:
    s = node.schema
    typ = s.get("type") or ""
    self_val = _value(s, v, node.resource_root)
    old_val: Any = _MISSING
    for rule in node.rules:
        if rule.error:
            res.errors.append(field.invalid(path, typ, f"rule compile error: {rule.error}"))
            continue
        if rule.program is None:
            continue
        optional = bool(rule.spec.get("optionalOldSelf"))
        if rule.uses_old and old is None and not optional:
            continue
        activation: dict[str, Any] = {"self": self_val}
        if rule.uses_old:
            if old_val is _MISSING:
                old_val = _value(s, old, node.resource_root) if old is not None else None
            if optional:
                activation["oldSelf"] = cel.Optional.of(old_val) if old is not None \
                    else cel.Optional()
            else:
                activation["oldSelf"] = old_val
        if res.budget is None:
            res.budget = cel.Budget(OBJECT_STEPS)
        if res.budget.left <= 0:
            res.errors.append(field.invalid(path, typ, OUT_OF_BUDGET))
            return
        try:
            result = rule.program.evaluate(activation, res.budget)
        except cel.EvalError as e:
            text = str(e)
            if text.startswith("no such overload"):
                detail = (f"'{text}': call arguments did not match a supported operator, "
                          f"function or macro signature for rule: {rule.error_string()}")
            else:
                detail = f"{text} evaluating rule: {rule.error_string()}"
            res.errors.append(field.invalid(path, typ, detail))
            continue
        kind = "bool" if isinstance(result, bool) else cel.type_name(result)
        if kind == "bool" and result:
            continue
        if kind != "bool":
            res.errors.append(field.invalid(
                path, typ, f"rule compile error: compilation failed: cel expression must "
                           f"evaluate to a bool evaluating rule: {rule.error_string()}"))
            continue
        where = _child(path, rule.field_path)
        detail = _message(rule, activation) or rule.default_message()
        err = _error(rule.spec.get("reason"), where, typ, detail)
        if not rule.uses_old and ratchet:
            res.warnings.append(str(err))
        else:
            res.errors.append(err)


def _message(rule: Rule, activation: dict[str, Any]) -> str:
    if rule.message_program is None:
        return ""
    try:
        out = rule.message_program.evaluate(activation)
    except cel.EvalError:
        return ""
    if not isinstance(out, str):
        return ""
    text = str(out).strip()
    if not text or len(text) > MAX_MESSAGE or "\n" in text:
        return ""
    return text


def _error(reason: Any, path: str, typ: str, detail: str) -> FieldError:
    if reason == "FieldValueForbidden":
        return field.forbidden(path, detail)
    if reason == "FieldValueRequired":
        return field.required(path, detail)
    if reason == "FieldValueDuplicate":
        return field.duplicate(path, typ)
    return field.invalid(path, typ, detail)


# ------------------------------------------------------------ the CRD's rules

def _rule_value(spec: dict[str, Any]) -> dict[str, Any]:
    """A rule as upstream's error shows it (its internal type, JSON-encoded)."""
    return {"Rule": spec.get("rule", ""), "Message": spec.get("message", ""),
            "MessageExpression": spec.get("messageExpression", ""),
            "Reason": spec.get("reason"), "FieldPath": spec.get("fieldPath", ""),
            "OptionalOldSelf": spec.get("optionalOldSelf")}


def check_schema_rules(s: Schema, path: str, uncorrelatable: str | None) -> list[FieldError]:
    """The checks of a CRD's x-kubernetes-validations at one node: well-formed
    entries, rules and messageExpressions that compile, oldSelf only where
    old values correlate (``uncorrelatable`` names the list that prevents it)."""
    errs: list[FieldError] = []
    rules = s.get("x-kubernetes-validations")
    if not rules:
        return errs
    if not isinstance(rules, list):
        return [field.invalid(f"{path}.x-kubernetes-validations", rules, "must be a list")]
    shape: list[FieldError] = []
    for i, r in enumerate(rules):
        p = f"{path}.x-kubernetes-validations[{i}]"
        if not isinstance(r, dict):
            shape.append(field.invalid(p, r, "must be an object"))
            continue
        rule, msg = str(r.get("rule") or ""), str(r.get("message") or "")
        if not rule.strip():
            shape.append(field.required(f"{p}.rule", "rule is not specified"))
        elif msg and not msg.strip():
            shape.append(field.invalid(f"{p}.message", msg, "must be non-empty if specified"))
        elif "\n" in msg.strip():
            shape.append(field.invalid(f"{p}.message", msg, "must not contain line breaks"))
        elif "\n" in rule.strip() and not msg.strip():
            shape.append(field.required(f"{p}.message",
                                        "message must be specified if rule contains line breaks"))
        mexpr = str(r.get("messageExpression") or "")
        if mexpr and not mexpr.strip():
            shape.append(field.required(f"{p}.messageExpression",
                                        "messageExpression must be non-empty if specified"))
        if r.get("reason") is not None and r["reason"] not in REASONS:
            shape.append(field.not_supported(f"{p}.reason", r["reason"], list(REASONS)))
        fp = r.get("fieldPath")
        if fp:
            fp = str(fp)
            if not fp.strip():
                shape.append(field.invalid(f"{p}.fieldPath", fp, "must be non-empty if specified"))
            if "\n" in fp:
                shape.append(field.invalid(f"{p}.fieldPath", fp, "must not contain line breaks"))
            try:
                normalize_field_path(fp, s)
            except ValueError:
                shape.append(field.invalid(f"{p}.fieldPath", fp, "must be a valid path"))
    if shape:
        return shape
    for i, r in enumerate(rules):
        p = f"{path}.x-kubernetes-validations[{i}]"
        compiled_rule = Rule(r, s)
        if compiled_rule.error:
            errs.append(field.invalid(f"{p}.rule", _rule_value(r), compiled_rule.error))
        mexpr = str(r.get("messageExpression") or "").strip()
        if mexpr:
            try:
                cel.compile_expression(mexpr, ["self", "oldSelf"])
            except cel.CompileError as e:
                errs.append(field.invalid(f"{p}.messageExpression", _rule_value(r),
                                          f"messageExpression compilation failed: {e}"))
        if compiled_rule.program is None:
            continue
        if compiled_rule.uses_old:
            if uncorrelatable is not None:
                errs.append(field.invalid(
                    f"{p}.rule", r["rule"], "oldSelf cannot be used on the uncorrelatable "
                    f"portion of the schema within {uncorrelatable}"))
        elif r.get("optionalOldSelf") is not None:
            errs.append(field.invalid(f"{p}.optionalOldSelf", r["optionalOldSelf"],
                                      "may not be set if oldSelf is not used in rule"))
    return errs
