"""Error constructors and helpers shared by the per-group validators.

Errors print their value the way Go's field.Error does (``%q`` for
strings, ``%#v`` for maps and structs), so that messages such as
``Invalid value: map[string]string{"app":"x"}`` read as upstream's.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import orjson

from pinnace.api.field import FieldError

Obj = dict[str, Any]
Errs = list[FieldError]

IMMUTABLE = "field is immutable"
NON_NEGATIVE = "must be greater than or equal to 0"
PORT_RANGE = "must be between 1 and 65535, inclusive"


class GoRepr(str):
    """A value already rendered as Go would print it; shown verbatim."""


def go_repr(value: Any) -> str:
    """Render ``value`` as field.Error does."""
    if isinstance(value, GoRepr):
        return str(value)
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{go_repr(k)}:{go_repr(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if not value:
            return "[]string{}"
        return "[]string{" + ", ".join(go_repr(v) for v in value) + "}"
    return orjson.dumps(value).decode()


class Err(FieldError):
    """A FieldError whose message renders values Go-style."""

    def body(self) -> str:
        from pinnace.api.field import _BODY, _OMIT  # type: ignore[attr-defined]
        s = _BODY.get(self.type, self.type)
        if self.type not in ("FieldValueRequired", "FieldValueForbidden",
                             "FieldValueTooLong", "InternalError") and self.value is not _OMIT:
            s += ": " + go_repr(self.value)
        if self.detail:
            s += ": " + self.detail
        return s


def required(path: str, detail: str = "") -> Err:
    return Err("FieldValueRequired", path, detail=detail)


def invalid(path: str, value: Any, detail: str = "") -> Err:
    return Err("FieldValueInvalid", path, value, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> Err:
    quoted = ", ".join(orjson.dumps(str(s)).decode() for s in supported)
    return Err("FieldValueNotSupported", path, value, "supported values: " + quoted)


def forbidden(path: str, detail: str) -> Err:
    return Err("FieldValueForbidden", path, detail=detail)


def duplicate(path: str, value: Any) -> Err:
    return Err("FieldValueDuplicate", path, value)


def not_found(path: str, value: Any) -> Err:
    return Err("FieldValueNotFound", path, value)


def too_long(path: str, max_len: int) -> Err:
    unit = "byte" if max_len == 1 else "bytes"
    return Err("FieldValueTooLong", path, detail=f"may not be more than {max_len} {unit}")


def too_many(path: str, actual: int, max_items: int) -> Err:
    return Err("FieldValueTooMany", path, actual, f"must have at most {max_items} items")


def internal(path: str, detail: str) -> Err:
    return Err("InternalError", path, detail=detail)


def join(base: str, child: str) -> str:
    return f"{base}.{child}" if base else child


def d(obj: Any, *keys: str) -> Any:
    """Walk nested dicts, None when any step is missing."""
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def as_dict(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def non_negative(v: Any, path: str) -> Errs:
    if is_int(v) and v < 0:
        return [invalid(path, v, NON_NEGATIVE)]
    return []


def immutable(new: Any, old: Any, path: str) -> Errs:
    if new != old:
        return [invalid(path, new, IMMUTABLE)]
    return []


def port_errors(value: Any, path: str) -> Errs:
    if not is_int(value) or not 1 <= value <= 65535:
        return [invalid(path, value, PORT_RANGE)]
    return []


def int_or_string_repr(v: Any) -> GoRepr:
    """intstr.IntOrString as %#v prints it."""
    if isinstance(v, str):
        return GoRepr(f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_repr(v)}}}')
    return GoRepr(f'intstr.IntOrString{{Type:0, IntVal:{v}, StrVal:""}}')


def selector_repr(sel: Any) -> GoRepr:
    """*metav1.LabelSelector as %#v prints it after dereference."""
    sel = as_dict(sel)
    ml = sel.get("matchLabels")
    ml_s = go_repr(ml) if isinstance(ml, dict) and ml else "map[string]string(nil)"
    exprs = as_list(sel.get("matchExpressions"))
    if exprs:
        parts = []
        for e in exprs:
            vals = e.get("values")
            vals_s = go_repr(vals) if vals else "[]string(nil)"
            parts.append(f'v1.LabelSelectorRequirement{{Key:{go_repr(e.get("key", ""))}, '
                         f'Operator:{go_repr(e.get("operator", ""))}, Values:{vals_s}}}')
        ex_s = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    else:
        ex_s = "[]v1.LabelSelectorRequirement(nil)"
    return GoRepr(f"v1.LabelSelector{{MatchLabels:{ml_s}, MatchExpressions:{ex_s}}}")
