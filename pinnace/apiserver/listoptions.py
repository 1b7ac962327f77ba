"""The query parameters of lists and watches, read as kube-apiserver reads
them: integers as Go's strconv.ParseInt does (int64, no floats, no "nan"),
ValidateListOptions' rules on resourceVersionMatch and sendInitialEvents,
and continue tokens checked before they are trusted with a range read.
Bad input is a 400 or 422 Status naming it, never a 500."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from pinnace.api import field

from . import status

INT64_MAX = 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+\Z")


def int64(q: Any, name: str, default: int = 0) -> int:
    """Query parameter ``name`` as an int64 (``default`` when absent or
    empty); 400 with Go's ParseInt message otherwise."""
    raw = q.get(name)
    if raw in (None, ""):
        return default
    if not _GO_INT.match(raw):
        raise status.bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
    value = int(raw)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise status.bad_request(f'strconv.ParseInt: parsing "{raw}": value out of range')
    return value


def limit(q: Any) -> int:
    """The page size; 0 for no limit (Kubernetes reads a limit <= 0 as none)."""
    return max(int64(q, "limit"), 0)


def validate(q: Any, watch: bool) -> None:
    """ValidateListOptions (and validateWatchOptions for a watch): 422 Invalid."""
    match = q.get("resourceVersionMatch", "")
    rv = q.get("resourceVersion", "")
    cont = q.get("continue", "")
    send_initial = "sendInitialEvents" in q
    errs: list[field.FieldError] = []
    if watch:
        if send_initial and match != "NotOlderThan":
            errs.append(field.forbidden("resourceVersionMatch", "sendInitialEvents requires "
                                        "setting resourceVersionMatch to NotOlderThan"))
        if match:
            if not send_initial:
                errs.append(field.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                            "forbidden for watch unless sendInitialEvents is "
                                            "provided"))
            if match != "NotOlderThan":
                errs.append(field.not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
            if cont:
                errs.append(field.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                            "forbidden when continue is provided"))
    else:
        if match:
            if not rv:
                errs.append(field.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                            "forbidden unless resourceVersion is provided"))
            if cont:
                errs.append(field.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                            "forbidden when continue is provided"))
            if match not in ("Exact", "NotOlderThan"):
                errs.append(field.not_supported("resourceVersionMatch", match,
                                                ["Exact", "NotOlderThan", ""]))
            if match == "Exact" and rv == "0":
                errs.append(field.forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" '
                                            'is forbidden for resourceVersion "0"'))
        if send_initial:
            errs.append(field.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for "
                                        "list"))
    if errs:
        raise status.invalid("ListOptions", "meta.k8s.io", "", errs)


def encode_continue(start: str, rv: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"start": start, "rv": rv})).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[str, int]:
    """(start key, revision) of a continue token this server issued for a
    list under ``prefix``; 400 for anything else."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        start, rv = data["start"], data["rv"]
    except Exception:
        raise status.bad_request("continue key is not valid") from None
    if not isinstance(start, str) or not start.startswith(prefix) or \
            isinstance(rv, bool) or not isinstance(rv, int) or not (0 < rv <= INT64_MAX or rv == -1):
        raise status.bad_request(f"continue key is not valid: {token}")
    # -1: the token a 410 hands out, to go on at the newest revision.
    return start, max(rv, 0)


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list.")


def continue_expired(start: str) -> status.APIError:
    """410 for a continue token whose revision was compacted away, carrying
    the token that goes on at the newest revision (upstream's
    handleCompactedErrorForPaging)."""
    return status.APIError(410, "Expired", CONTINUE_EXPIRED,
                           metadata={"continue": encode_continue(start, -1)})


__all__ = ["CONTINUE_EXPIRED", "INT64_MAX", "continue_expired", "decode_continue",
           "encode_continue", "int64", "limit", "validate"]
