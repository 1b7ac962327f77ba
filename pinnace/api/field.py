"""Field errors, shaped and worded like Kubernetes' apimachinery field.Error,
so that kubectl prints the same messages against pinnace.

A validator returns a list of FieldError; the API server turns the list
into a 422 Invalid Status whose ``details.causes`` name every wrong field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_BODY = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
}
# Types whose message shows the offending value.
_SHOWS_VALUE = {"FieldValueNotFound", "FieldValueDuplicate", "FieldValueInvalid",
                "FieldValueNotSupported", "FieldValueTypeInvalid"}

_OMIT = object()


def _fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return orjson.dumps(value).decode()


@dataclass
class FieldError:
    type: str  # one of the keys of _BODY
    field: str  # "spec.containers[0].name"
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        s = _BODY.get(self.type, self.type)
        if self.type in _SHOWS_VALUE and self.value is not _OMIT:
            s += ": " + _fmt_value(self.value)
        if self.detail:
            s += ": " + self.detail
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict[str, str]:
        return {"reason": self.type, "message": self.body(), "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, detail=detail)


def invalid(field: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("FieldValueInvalid", field, value, detail)


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(_fmt_value(s) for s in supported)
    return FieldError("FieldValueNotSupported", field, value, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, detail=detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, value)


def too_long(field: str, value: Any, max_len: int) -> FieldError:
    return FieldError("FieldValueTooLong", field,
                      detail=f"may not be more than {max_len} bytes")


def not_found(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", field, value)


def aggregate(errors: list[FieldError]) -> str:
    """The message of a list of errors as apimachinery aggregates it."""
    msgs: list[str] = []
    for e in errors:
        s = str(e)
        if s not in msgs:
            msgs.append(s)
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"
