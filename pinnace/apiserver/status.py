"""metav1.Status errors: the one way handlers report failure.

Raise ``APIError`` anywhere below a handler; the error middleware turns it
into a Status object with the code and reason kubectl expects.
"""

from __future__ import annotations

from typing import Any

from pinnace.api.field import FieldError, aggregate


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 metadata: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.metadata = metadata or {}  # the Status's ListMeta (a continue token)

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.metadata),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            st["details"] = self.details
        return st


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(resource: str, group: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                    _details(name, group, resource))


def already_exists(resource: str, group: str, name: str) -> APIError:
    return APIError(409, "AlreadyExists",
                    f'{_qualified(resource, group)} "{name}" already exists',
                    _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str) -> APIError:
    return APIError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(resource, group)} '
                    f'"{name}": {why}',
                    _details(name, group, resource))


def check_preconditions(resource: str, group: str, name: str, meta: dict[str, Any],
                        uid: str | None, resource_version: str | None) -> None:
    """A Conflict, worded as upstream's, when the object is not the one a
    DeleteOptions (or a Binding) names by uid or resourceVersion."""
    for label, want, have in (("UID", uid, meta.get("uid", "")),
                              ("ResourceVersion", resource_version,
                               meta.get("resourceVersion", ""))):
        if want and want != have:
            raise conflict(resource, group, name, f"Precondition failed: {label} in "
                                                  f"precondition: {want}, {label} in object "
                                                  f"meta: {have}")


STALE = ("the object has been modified; please apply your changes to the latest version and "
         "try again")


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> APIError:
    qkind = f"{kind}.{group}" if group else kind
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return APIError(422, "Invalid", f'{qkind} "{name}" is invalid: {aggregate(errors)}', details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def forbidden(message: str, resource: str = "", group: str = "", name: str = "") -> APIError:
    return APIError(403, "Forbidden", message,
                    _details(name, group, resource) if resource else None)


def namespace_terminating(resource: str, group: str, name: str, namespace: str) -> APIError:
    """NamespaceLifecycle's refusal, with the cause clients look for."""
    what = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    details = _details(name, group, resource)
    details["causes"] = [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                          "message": f"namespace {namespace} is being terminated"}]
    return APIError(403, "Forbidden", f"{what} is forbidden: unable to create new content in "
                    f"namespace {namespace} because it is being terminated", details)


def method_not_allowed(
        message: str = "the server does not allow this method on the requested resource"
) -> APIError:
    return APIError(405, "MethodNotAllowed", message, {})


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def too_large(message: str = "Request entity too large: limit is 3145728") -> APIError:
    return APIError(413, "RequestEntityTooLarge", message)


def unsupported_media(message: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", message)


def not_acceptable(message: str) -> APIError:
    return APIError(406, "NotAcceptable", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def success(details: dict[str, Any] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        st["details"] = details
    return st
