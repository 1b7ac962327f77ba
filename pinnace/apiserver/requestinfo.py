"""What a request asks to do, in the terms authorization speaks: a verb on a
resource (group, resource, subresource, namespace, name) or a verb on a
non-resource path. Read off the method, path and query alone, before any
routing, as upstream's RequestInfoFactory does, so that a request for a type
the server does not know is still authorized (and refused) by its path.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

# /namespaces/NAME/status and /finalize belong to the namespace itself, not
# to a resource inside it.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}
# Streaming pod subresources reached by a WebSocket GET: upstream also
# demands "create" for them (KEP-4006), as SPDY's POST always did.
_UPGRADE_CREATE = frozenset({"exec", "attach", "portforward"})
# The kubelet's own streaming endpoints, reached through nodes/NAME/proxy/:
# upstream authorizes their WebSocket GET as "get" (its documentation warns
# that get on nodes/proxy therefore runs commands in any container); pinnace
# demands "create" there too, as for the pods' own.
_KUBELET_STREAMS = frozenset({"exec", "attach", "run", "portForward"})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    # A list's or watch's field selector, as given: what the Node authorizer
    # reads a kubelet's "my pods only" from.
    field_selector: str = ""


def field_equals(selector: str, field: str) -> str | None:
    """The value a field selector requires ``field`` to equal ("=" and "=="
    alike), if it does."""
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        if sep and key.strip() == field:
            return value.removeprefix("=").strip()
    return None


def _kubelet_path(parts: list[str]) -> str:
    """The first segment of the kubelet path a node proxy request reaches,
    its dot segments resolved as the URL it is sent to resolves them."""
    return posixpath.normpath("/" + "/".join(parts)).lstrip("/").partition("/")[0]


def _true(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def request_info(method: str, path: str, query: Mapping[str, str] | None = None,
                 upgrade: bool = False) -> RequestInfo:
    query = query or {}
    parts = [unquote(p) for p in path.split("/") if p]
    verb = _VERBS.get(method, method.lower())
    non_resource = RequestInfo(method.lower(), path)
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        if len(parts) < 3:  # /api and /api/v1 are discovery
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:  # /apis, /apis/G and /apis/G/V are discovery
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]

    if rest[0] == "watch":  # /api/v1/watch/...: the deprecated spelling of ?watch=true
        verb, rest = "watch", rest[1:]
        if not rest:
            return non_resource
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""

    if not name and verb == "get":
        verb = "watch" if _true(query.get("watch")) else "list"
    if not name and verb == "delete":
        verb = "deletecollection"
    selector = query.get("fieldSelector", "") if verb in ("list", "watch") else ""
    if selector and not name:
        # A list narrowed to one name is authorized as that name: what lets
        # a binding with resourceNames watch its one object.
        name = field_equals(selector, "metadata.name") or ""
    if upgrade and method == "GET" and not group and (
            (resource == "pods" and subresource in _UPGRADE_CREATE) or
            (resource == "nodes" and subresource == "proxy" and _kubelet_path(rest[3:])
             in _KUBELET_STREAMS)):
        verb = "create"
    return RequestInfo(verb, path, True, group, version, namespace, resource, subresource, name,
                       selector)
