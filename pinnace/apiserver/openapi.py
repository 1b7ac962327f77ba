"""The OpenAPI documents kubectl reads: /openapi/v2 (Swagger 2.0), the
/openapi/v3 index and one OpenAPI 3.0 document per group-version.

Schemas come from the upstream definitions (pinnace.api.schema, JSON-schema
"$defs" form) plus the openAPIV3Schema of served CRDs. Paths are derived
from the served ResourceInfo list. Only definitions reachable from served
kinds are emitted.

kubectl relies on two details here: ``kubectl explain`` finds a kind's
schema by its ``x-kubernetes-group-version-kind`` list, and the field
validation check (QueryParamVerifierV3) looks for a PATCH operation whose
``x-kubernetes-group-version-kind`` object names the kind and that lists a
``fieldValidation`` query parameter.

Documents only change when the served resources or CRD schemas do, so each
is built once per distinct input and kept as bytes.

/openapi/v2 is also served as the gnostic protobuf (pinnace.apiserver.
openapi_pb) to clients that ask for it, as kube-openapi's handler does:
``serve_v2`` negotiates the Accept header, sets the ETag (the SHA-512 of the
JSON, shared by both forms since the answer varies by Accept) and
Last-Modified, and answers conditional requests with 304.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from pinnace.api import schema
from pinnace.api.resources import ResourceInfo
from pinnace.apiserver import openapi_pb

log = logging.getLogger("pinnace.apiserver.openapi")

Schema = dict[str, Any]
CRDSchemas = dict[tuple[str, str, str], Schema]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_INTSTR = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QTY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# Meta types every document carries, as upstream's do.
_ALWAYS = [_META + n for n in ("DeleteOptions", "Status", "WatchEvent", "Patch", "ObjectMeta",
                               "ListMeta", "APIResourceList")]
# Kinds behind subresources that are not the parent's kind.
_SUBRESOURCE_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}
_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml",
                "application/apply-patch+cbor"]
_PRODUCES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf",
             "application/cbor"]

# ---------------------------------------------------------------- parameters

_PARAM_TEXT: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', then the output is pretty printed. Defaults to 'false' "
               "unless the user-agent indicates a browser or command-line HTTP tool (curl and "
               "wget)."),
    "dryRun": ("string", "When present, indicates that modifications should not be persisted. "
               "An invalid or unrecognized dryRun directive will result in an error response "
               "and no further processing of the request. Valid values are: - All: all dry run "
               "stages will be processed"),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity "
                     "that is making these changes. The value must be less than or 128 "
                     "characters long, and only contain printable characters, as defined by "
                     "https://golang.org/pkg/unicode/#IsPrint."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle "
                        "objects in the request (POST/PUT/PATCH) containing unknown or "
                        "duplicate fields. Valid values are: - Ignore: This will ignore any "
                        "unknown fields that are silently dropped from the object, and will "
                        "ignore all but the last duplicate field that the decoder encounters. "
                        "This is the default behavior prior to v1.23. - Warn: This will send a "
                        "warning via the standard warning response header for each unknown "
                        "field that is dropped from the object, and for each duplicate field "
                        "that is encountered. The request will still succeed if there are no "
                        "other errors, and will only persist the last of any duplicate fields. "
                        "This is the default in v1.23+ - Strict: This will fail the request "
                        "with a BadRequest error if any unknown fields would be dropped from "
                        "the object, or if any duplicate fields are present. The error returned "
                        "from the server will contain all unknown and duplicate fields "
                        "encountered."),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will "
              "re-acquire conflicting fields owned by other people. Force flag must be unset "
              "for non-apply patch requests."),
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type "
                            "\"BOOKMARK\". Servers that do not implement bookmarks may ignore "
                            "this flag and bookmarks are sent at the server's discretion."),
    "continue": ("string", "The continue option should be set when retrieving more results "
                 "from the server. Since this value is server defined, clients may only use "
                 "the continue value from a previous query result with identical query "
                 "parameters (except for the value of continue)."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their "
                      "fields. Defaults to everything."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their "
                      "labels. Defaults to everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call. "
              "If more items exist, the server will set the `continue` field on the list "
              "metadata to a value that can be used with the same initial query to retrieve "
              "the next set of results."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions "
                        "a request may be served from. Defaults to unset"),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is "
                             "applied to list calls. Defaults to unset"),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with "
                          "`watch=true`. In that case, the watch stream will begin with "
                          "synthetic events to produce the current state of objects in the "
                          "collection."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call. This limits the duration "
                       "of the call, regardless of any activity or inactivity."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a "
              "stream of add, update, and remove notifications. Specify resourceVersion."),
    "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be "
                           "deleted. Value must be non-negative integer. The value zero "
                           "indicates delete immediately."),
    "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy, this field "
                         "will be deprecated in 1.7. Should the dependent objects be orphaned."),
    "propagationPolicy": ("string", "Whether and how garbage collection will be performed. "
                          "Either this field or OrphanDependents may be set, but not both. "
                          "Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (
        "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case "
        "the normal deletion flow fails with a corrupt object error."),
}
_LIST_PARAMS = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
                "watch"]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]
_DELETE_PARAMS = ["dryRun", "gracePeriodSeconds",
                  "ignoreStoreReadErrorWithClusterBreakingPotential",
                  "orphanDependents", "propagationPolicy"]


def _query(name: str, v3: bool) -> Schema:
    typ, desc = _PARAM_TEXT[name]
    p: Schema = {"name": name, "in": "query", "description": desc}
    if v3:
        p["schema"] = {"type": typ, "uniqueItems": True}
    else:
        p["type"] = typ
        p["uniqueItems"] = True
    return p


def _path_param(name: str, v3: bool) -> Schema:
    desc = "name of the resource" if name == "name" else \
        "object name and auth scope, such as for teams and projects"
    p: Schema = {"name": name, "in": "path", "required": True, "description": desc}
    if v3:
        p["schema"] = {"type": "string", "uniqueItems": True}
    else:
        p["type"] = "string"
        p["uniqueItems"] = True
    return p


# ------------------------------------------------------------------ schemas

def _crd_def_name(group: str, version: str, kind: str) -> str:
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _def_name(group: str, version: str, kind: str) -> str | None:
    return schema.definition_name(group, version, kind)


class _Builder:
    """Converts definitions to one OpenAPI flavour and tracks which are used."""

    def __init__(self, v3: bool, crd_defs: dict[str, Schema], served_gvs: set[tuple[str, str]]):
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"
        self.crd_defs = crd_defs
        self.served_gvs = served_gvs
        self.out: dict[str, Schema] = {}
        self._pending: list[str] = []

    def ref(self, name: str) -> Schema:
        self.want(name)
        return {"$ref": self.prefix + name}

    def want(self, name: str) -> None:
        if name not in self.out and name not in self._pending:
            self._pending.append(name)

    def finish(self) -> dict[str, Schema]:
        while self._pending:
            name = self._pending.pop()
            if name in self.out:
                continue
            src = self.crd_defs.get(name)
            if src is None:
                src = schema.definitions().get(name)
                if src is None:
                    continue
                self.out[name] = self.definition(name, src)
            else:
                self.out[name] = self.node(src, top=True)
        return dict(sorted(self.out.items()))

    def definition(self, name: str, src: Schema) -> Schema:
        # v2 calls these strings; v3 names the alternatives (so explain shows
        # <IntOrString> and <Quantity> rather than <string>), as upstream does.
        if name == _INTSTR:
            if self.v3:
                return {"description": _INTSTR_DESC, "format": "int-or-string",
                        "oneOf": [{"type": "integer"}, {"type": "string"}]}
            return {"description": _INTSTR_DESC, "type": "string", "format": "int-or-string"}
        if name == _QTY:
            if self.v3:
                return {"description": _QTY_DESC,
                        "oneOf": [{"type": "string"}, {"type": "number"}]}
            return {"description": _QTY_DESC, "type": "string"}
        out = self.node(src, top=True)
        gvks = src.get("x-kubernetes-group-version-kind")
        if gvks:
            if len(gvks) > 1:  # meta types name every group; keep the served ones
                gvks = [g for g in gvks if (g["group"], g["version"]) in self.served_gvs] or gvks
            out["x-kubernetes-group-version-kind"] = gvks
            props = out.get("properties", {})
            for key in ("apiVersion", "kind"):
                if key in props:
                    props[key].pop("enum", None)
            # kubernetes-validate marks spec required on kinds; upstream does not.
            req = [r for r in out.get("required", ()) if r not in ("spec", "metadata")]
            if req:
                out["required"] = req
            else:
                out.pop("required", None)
        return out

    def node(self, src: Schema, top: bool = False) -> Schema:
        out: Schema = {}
        for key, val in src.items():
            if key == "$ref":
                if isinstance(val, str) and val.startswith(schema.REF_PREFIX):
                    target = val[len(schema.REF_PREFIX):]
                    if self.v3 and not top:
                        # 3.0 ignores siblings of $ref; upstream wraps it in allOf.
                        out["allOf"] = [self.ref(target)]
                        if _is_object_def(target):
                            out.setdefault("default", {})
                    else:
                        out.update(self.ref(target))
                else:
                    out[key] = val
            elif key == "type":
                if isinstance(val, list):
                    types = [t for t in val if t != "null"]
                    if types:
                        out["type"] = types[0]
                else:
                    out["type"] = val
            elif key == "properties" and isinstance(val, dict):
                out[key] = {k: self.node(v) for k, v in val.items()}
            elif key in ("nullable", "not", "anyOf", "oneOf") and not self.v3:
                continue  # not part of Swagger 2.0 schemas; upstream drops them too
            elif key in ("items", "not", "additionalProperties") and isinstance(val, dict):
                out[key] = self.node(val)
            elif key in ("allOf", "anyOf", "oneOf") and isinstance(val, list):
                out[key] = [self.node(v) for v in val if isinstance(v, dict)]
            else:
                out[key] = val
        if "allOf" in out and "$ref" in out:
            out.pop("$ref")
        return out


def _is_object_def(name: str) -> bool:
    d = schema.definitions().get(name)
    return bool(d and "properties" in d)


_INTSTR_DESC = ("IntOrString is a type that can hold an int32 or a string.  When used in JSON or "
                "YAML marshalling and unmarshalling, it produces or consumes the inner type.  "
                "This allows you to have, for example, a JSON field that can accept a name or "
                "number.")
_QTY_DESC = ("Quantity is a fixed-point representation of a number. It provides convenient "
             "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() "
             "accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= "
             "<signedNumber><suffix>\n```")

_API_VERSION_DESC = ("APIVersion defines the versioned schema of this representation of an "
                     "object. Servers should convert recognized schemas to the latest internal "
                     "value, and may reject unrecognized values. More info: https://git.k8s.io/"
                     "community/contributors/devel/sig-architecture/api-conventions.md#resources")
_KIND_DESC = ("Kind is a string value representing the REST resource this object represents. "
              "Servers may infer this from the endpoint the client submits requests to. Cannot "
              "be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/"
              "devel/sig-architecture/api-conventions.md#types-kinds")


def _crd_definitions(crd_schemas: CRDSchemas) -> dict[str, Schema]:
    """Definitions in $defs form for CRD kinds and their lists."""
    out: dict[str, Schema] = {}
    for (group, version, kind), sch in crd_schemas.items():
        name = _crd_def_name(group, version, kind)
        d: Schema = dict(sch or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        props = dict(d.get("properties") or {})
        props["apiVersion"] = {"description": _API_VERSION_DESC, "type": "string"}
        props["kind"] = {"description": _KIND_DESC, "type": "string"}
        props["metadata"] = {"$ref": schema.REF_PREFIX + _META + "ObjectMeta",
                             "description": "Standard object's metadata. More info: https://git."
                             "k8s.io/community/contributors/devel/sig-architecture/"
                             "api-conventions.md#metadata"}
        d["properties"] = props
        d.setdefault("type", "object")
        d["x-kubernetes-group-version-kind"] = [
            {"group": group, "version": version, "kind": kind}]
        out[name] = d
        out[name + "List"] = {
            "description": f"{kind}List is a list of {kind}",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"description": _API_VERSION_DESC, "type": "string"},
                "items": {"description": f"List of {kind.lower()}s. More info: https://git.k8s.io"
                          "/community/contributors/devel/api-conventions.md",
                          "type": "array", "items": {"$ref": schema.REF_PREFIX + name}},
                "kind": {"description": _KIND_DESC, "type": "string"},
                "metadata": {"$ref": schema.REF_PREFIX + _META + "ListMeta",
                             "description": "Standard list metadata. More info: https://git.k8s."
                             "io/community/contributors/devel/sig-architecture/"
                             "api-conventions.md#types-kinds"},
            },
            "x-kubernetes-group-version-kind": [
                {"group": group, "version": version, "kind": kind + "List"}],
        }
    return out


# -------------------------------------------------------------------- paths

def _camel_group(group: str) -> str:
    if not group:
        return "Core"
    parts = group.removesuffix(".k8s.io").replace("-", ".").split(".")
    return "".join(p[:1].upper() + p[1:] for p in parts)


def _tag(group: str, version: str) -> str:
    g = _camel_group(group)
    return f"{g[:1].lower()}{g[1:]}_{version}"


def _kind_name(r: ResourceInfo, crds: dict[str, Schema]) -> str:
    crd = _crd_def_name(r.group, r.version, r.kind)
    if crd in crds:
        return crd
    return _def_name(r.group, r.version, r.kind) or crd


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


class _Paths:
    def __init__(self, b: _Builder) -> None:
        self.b = b
        self.v3 = b.v3
        self.paths: dict[str, Schema] = {}

    def _body(self, ref_name: str, required: bool = True) -> Any:
        if self.v3:
            schema_ref = self.b.ref(ref_name)
            return {"content": {"*/*": {"schema": schema_ref}}, "required": required}
        return {"name": "body", "in": "body", "required": required,
                "schema": self.b.ref(ref_name)}

    def _responses(self, codes: dict[str, str]) -> Schema:
        out: Schema = {}
        for code, ref_name in codes.items():
            desc = {"200": "OK", "201": "Created", "202": "Accepted"}.get(code, code)
            if self.v3:
                s = self.b.ref(ref_name)
                out[code] = {"description": desc, "content": {
                    t: {"schema": s} for t in _PRODUCES}}
            else:
                out[code] = {"description": desc, "schema": self.b.ref(ref_name)}
        out["401"] = {"description": "Unauthorized"}
        return out

    def _op(self, action: str, op_id: str, desc: str, tag: str, gvk: dict[str, str],
            params: list[str], responses: dict[str, str], body: str | None = None,
            patch: bool = False) -> Schema:
        op: Schema = {"description": desc, "operationId": op_id, "tags": [tag]}
        ps = [_query(p, self.v3) for p in params]
        if body is not None:
            if self.v3:
                if patch:
                    op["requestBody"] = {"content": {t: {"schema": self.b.ref(_META + "Patch")}
                                                     for t in _PATCH_TYPES}, "required": True}
                else:
                    op["requestBody"] = self._body(body, required=action != "delete"
                                                   and action != "deletecollection")
            else:
                ps.insert(0, self._body(_META + "Patch" if patch else body,
                                        required=action not in ("delete", "deletecollection")))
        if ps:
            op["parameters"] = ps
        if not self.v3:
            op["consumes"] = _PATCH_TYPES[:4] if patch else ["*/*"]
            op["produces"] = _PRODUCES
            op["schemes"] = ["https"]
        op["responses"] = self._responses(responses)
        op["x-kubernetes-action"] = action
        op["x-kubernetes-group-version-kind"] = gvk
        return op

    def _item(self, path: str, path_params: list[str]) -> Schema:
        item = self.paths.setdefault(path, {})
        item["parameters"] = [_path_param(p, self.v3) for p in path_params] + \
            [_query("pretty", self.v3)]
        return item

    def add(self, r: ResourceInfo, crds: dict[str, Schema]) -> None:
        kind_def = _kind_name(r, crds)
        list_def = kind_def + "List"
        gvk = _gvk(r.group, r.version, r.kind)
        tag = _tag(r.group, r.version)
        base = "/api/v1" if not r.group else f"/apis/{r.group}/{r.version}"
        ident = _camel_group(r.group) + r.version[:1].upper() + r.version[1:]
        ns = "Namespaced" if r.namespaced else ""
        coll = f"{base}/namespaces/{{namespace}}/{r.resource}" if r.namespaced \
            else f"{base}/{r.resource}"
        coll_params = ["namespace"] if r.namespaced else []
        verbs = set(r.verbs)
        status = _META + "Status"
        if verbs & {"list", "create", "deletecollection"}:
            item = self._item(coll, coll_params)
            if "list" in verbs:
                item["get"] = self._op("list", f"list{ident}{ns}{r.kind}",
                                       f"list or watch objects of kind {r.kind}", tag, gvk,
                                       _LIST_PARAMS, {"200": list_def})
            if "create" in verbs:
                item["post"] = self._op("post", f"create{ident}{ns}{r.kind}",
                                        f"create a {r.kind}", tag, gvk, _WRITE_PARAMS,
                                        {"200": kind_def, "201": kind_def, "202": kind_def},
                                        body=kind_def)
            if "deletecollection" in verbs:
                item["delete"] = self._op("deletecollection",
                                          f"delete{ident}Collection{ns}{r.kind}",
                                          f"delete collection of {r.kind}", tag, gvk,
                                          _DELETE_PARAMS + [p for p in _LIST_PARAMS
                                                            if p != "watch"],
                                          {"200": status}, body=_META + "DeleteOptions")
        if r.namespaced and "list" in verbs:
            item = self._item(f"{base}/{r.resource}", [])
            item["get"] = self._op("list", f"list{ident}{r.kind}ForAllNamespaces",
                                   f"list or watch objects of kind {r.kind}", tag, gvk,
                                   _LIST_PARAMS, {"200": list_def})
        if verbs & {"get", "update", "patch", "delete"}:
            item = self._item(f"{coll}/{{name}}", ["name"] + coll_params)
            if "get" in verbs:
                item["get"] = self._op("get", f"read{ident}{ns}{r.kind}",
                                       f"read the specified {r.kind}", tag, gvk, [],
                                       {"200": kind_def})
            if "update" in verbs:
                item["put"] = self._op("put", f"replace{ident}{ns}{r.kind}",
                                       f"replace the specified {r.kind}", tag, gvk,
                                       _WRITE_PARAMS, {"200": kind_def, "201": kind_def},
                                       body=kind_def)
            if "patch" in verbs:
                item["patch"] = self._op("patch", f"patch{ident}{ns}{r.kind}",
                                         f"partially update the specified {r.kind}", tag, gvk,
                                         _WRITE_PARAMS + ["force"],
                                         {"200": kind_def, "201": kind_def}, body=kind_def,
                                         patch=True)
            if "delete" in verbs:
                item["delete"] = self._op("delete", f"delete{ident}{ns}{r.kind}",
                                          f"delete a {r.kind}", tag, gvk, _DELETE_PARAMS,
                                          {"200": status, "202": status},
                                          body=_META + "DeleteOptions")
        for sub in r.subresources:
            self._subresource(r, sub, coll, coll_params, kind_def, gvk, tag, ident, ns)

    def _subresource(self, r: ResourceInfo, sub: str, coll: str, coll_params: list[str],
                     kind_def: str, gvk: dict[str, str], tag: str, ident: str, ns: str) -> None:
        cap = sub[:1].upper() + sub[1:]
        path = f"{coll}/{{name}}/{sub}"
        if sub in ("status", "scale"):
            if sub == "scale":
                sg, sv, sk = _SUBRESOURCE_KIND["scale"]
                sub_def = _def_name(sg, sv, sk) or kind_def
                sgvk = _gvk(sg, sv, sk)
            else:
                sub_def, sgvk = kind_def, gvk
            item = self._item(path, ["name"] + coll_params)
            item["get"] = self._op("get", f"read{ident}{ns}{r.kind}{cap}",
                                   f"read {sub} of the specified {r.kind}", tag, sgvk, [],
                                   {"200": sub_def})
            item["put"] = self._op("put", f"replace{ident}{ns}{r.kind}{cap}",
                                   f"replace {sub} of the specified {r.kind}", tag, sgvk,
                                   _WRITE_PARAMS, {"200": sub_def, "201": sub_def},
                                   body=sub_def)
            item["patch"] = self._op("patch", f"patch{ident}{ns}{r.kind}{cap}",
                                     f"partially update {sub} of the specified {r.kind}", tag,
                                     sgvk, _WRITE_PARAMS + ["force"],
                                     {"200": sub_def, "201": sub_def}, body=sub_def, patch=True)
        elif sub in _SUBRESOURCE_KIND:
            sg, sv, sk = _SUBRESOURCE_KIND[sub]
            post_def = _def_name(sg, sv, sk)
            if post_def is None:
                return
            item = self._item(path, ["name"] + coll_params)
            item["post"] = self._op("post", f"create{ident}{ns}{r.kind}{cap}",
                                    f"create {sub} of a {r.kind}", tag, _gvk(sg, sv, sk),
                                    _WRITE_PARAMS,
                                    {"200": post_def, "201": post_def, "202": post_def},
                                    body=post_def)
        elif sub == "finalize":
            item = self._item(path, ["name"] + coll_params)
            item["put"] = self._op("put", f"replace{ident}{ns}{r.kind}{cap}",
                                   f"replace finalize of the specified {r.kind}", tag, gvk,
                                   _WRITE_PARAMS, {"200": kind_def, "201": kind_def},
                                   body=kind_def)


# ---------------------------------------------------------------- documents

def _build(resources: Iterable[ResourceInfo], crd_schemas: CRDSchemas, v3: bool,
           served_gvs: set[tuple[str, str]]) -> tuple[dict[str, Schema], dict[str, Schema]]:
    crds = _crd_definitions(crd_schemas)
    b = _Builder(v3, crds, served_gvs)
    paths = _Paths(b)
    for r in resources:
        kind_def = _kind_name(r, crds)
        b.want(kind_def)
        if kind_def + "List" in crds or kind_def + "List" in schema.definitions():
            b.want(kind_def + "List")
        paths.add(r, crds)
    for name in _ALWAYS:
        b.want(name)
    return paths.paths, b.finish()


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


_INFO = {"title": "Kubernetes", "version": f"v{schema.KUBERNETES_VERSION}"}
_SECURITY_V2 = {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                "name": "authorization", "type": "apiKey"}}
_SECURITY_V3 = {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                "name": "authorization", "type": "apiKey"}}


def _served_gvs(resources: list[ResourceInfo]) -> set[tuple[str, str]]:
    return {(r.group, r.version) for r in resources}


def _v2(resources: list[ResourceInfo], crd_schemas: CRDSchemas) -> bytes:
    paths, defs = _build(resources, crd_schemas, False, _served_gvs(resources))
    doc = {"swagger": "2.0", "info": _INFO, "paths": dict(sorted(paths.items())),
           "definitions": defs, "securityDefinitions": _SECURITY_V2,
           "security": [{"BearerToken": []}]}
    return orjson.dumps(doc)


def _v3_docs(resources: list[ResourceInfo], crd_schemas: CRDSchemas) -> dict[str, bytes]:
    by_gv: dict[tuple[str, str], list[ResourceInfo]] = {}
    for r in resources:
        by_gv.setdefault((r.group, r.version), []).append(r)
    served = set(by_gv)
    out: dict[str, bytes] = {}
    for (group, version), rs in by_gv.items():
        crds = {k: v for k, v in crd_schemas.items() if k[0] == group and k[1] == version}
        paths, defs = _build(rs, crds, True, served)
        doc = {"openapi": "3.0.0", "info": _INFO, "paths": dict(sorted(paths.items())),
               "components": {"schemas": defs, "securitySchemes": _SECURITY_V3},
               "security": [{"BearerToken": []}]}
        out[_gv_path(group, version)] = orjson.dumps(doc)
    return out


# Built documents by input fingerprint; a handful of entries is plenty since
# the input only changes when a CRD does.
_cache: dict[tuple[Any, ...], Any] = {}
_CACHE_MAX = 16


def _crd_hash(crd_schemas: CRDSchemas) -> str:
    items = sorted(([*k], v) for k, v in crd_schemas.items())
    return hashlib.sha1(orjson.dumps(items, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _cached(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    hit = _cache.get(key)
    if hit is None:
        if len(_cache) >= _CACHE_MAX:
            _cache.pop(next(iter(_cache)))
        hit = _cache[key] = build()
    return hit


def openapi_v2(resources: list[ResourceInfo], crd_schemas: CRDSchemas) -> bytes:
    """The Swagger 2.0 document served at /openapi/v2."""
    key = ("v2", tuple(resources), _crd_hash(crd_schemas))
    return _cached(key, lambda: _v2(resources, crd_schemas))  # type: ignore[no-any-return]


def _all_v3(resources: list[ResourceInfo], crd_schemas: CRDSchemas) -> dict[str, bytes]:
    key = ("v3", tuple(resources), _crd_hash(crd_schemas))
    return _cached(key, lambda: _v3_docs(resources, crd_schemas))  # type: ignore[no-any-return]


def doc_hash(doc: bytes) -> str:
    """The hash clients see in serverRelativeURL (upstream: SHA-512, hex)."""
    return hashlib.sha512(doc).hexdigest().upper()


def openapi_v3_index(resources: list[ResourceInfo],
                     crd_group_versions: Iterable[tuple[str, str]] | CRDSchemas = ()) -> bytes:
    """The /openapi/v3 discovery document. Pass the CRD schema mapping (as
    given to openapi_v3_group_version) as ``crd_group_versions`` so each
    hash is that of the document served; plain (group, version) pairs are
    accepted too and only add entries for group-versions with no resource."""
    if isinstance(crd_group_versions, dict):
        crd_schemas: CRDSchemas = crd_group_versions
        extra: tuple[tuple[str, str], ...] = ()
    else:
        crd_schemas = {}
        extra = tuple(sorted(set(crd_group_versions)))
    docs = _all_v3(resources, crd_schemas)

    def build() -> bytes:
        paths = {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={doc_hash(d)}"}
                 for p, d in docs.items()}
        for g, v in extra:
            gv = _gv_path(g, v)
            paths.setdefault(gv, {"serverRelativeURL": f"/openapi/v3/{gv}"})
        return orjson.dumps({"paths": dict(sorted(paths.items()))})
    key = ("index", tuple(resources), _crd_hash(crd_schemas), extra)
    return _cached(key, build)  # type: ignore[no-any-return]


def openapi_v3_group_version(group: str, version: str, resources: list[ResourceInfo],
                             crd_schemas: CRDSchemas) -> bytes | None:
    """The OpenAPI 3.0 document for one group-version, or None when nothing
    is served there (the caller answers 404)."""
    return _all_v3(resources, crd_schemas).get(_gv_path(group, version))


# ------------------------------------------------------- serving /openapi/v2

V2_JSON = "application/json"
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# Accepted subtypes of "application", in kube-openapi's order; the @ spelling
# is the deprecated one and is answered with the dotted Content-Type.
_V2_ACCEPTED = (("json", V2_JSON),
                ("com.github.proto-openapi.spec.v2@v1.0+protobuf", V2_PROTOBUF),
                ("com.github.proto-openapi.spec.v2.v1.0+protobuf", V2_PROTOBUF))


def _accept_clauses(header: str) -> list[tuple[float, str, str]]:
    """(q, type, subtype) per Accept clause, ordered as goautoneg.ParseAccept
    orders them (its comparator, applied by Go's insertion sort)."""
    clauses: list[tuple[float, str, str]] = []
    for part in header.split(","):
        media, *params = part.strip(" ").split(";")
        sp = media.split("/")
        typ = sp[0].strip(" ")
        if len(sp) == 1 and typ == "*":
            sub = "*"
        elif len(sp) == 2:
            sub = sp[1].strip(" ")
        else:
            continue
        q = 1.0
        for p in params:
            name, eq, value = p.partition("=")
            if eq and name.strip(" ") == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        clauses.append((q, typ, sub))

    def less(a: tuple[float, str, str], b: tuple[float, str, str]) -> bool:
        return a[0] > b[0] or (a[1] != "*" and b[1] == "*") or (a[2] != "*" and b[2] == "*")
    for i in range(1, len(clauses)):
        j = i
        while j > 0 and less(clauses[j], clauses[j - 1]):
            clauses[j], clauses[j - 1] = clauses[j - 1], clauses[j]
            j -= 1
    return clauses


def v2_media_type(accept: str) -> str | None:
    """The Content-Type /openapi/v2 answers an Accept header with, or None
    (406). The first clause that matches wins; like upstream, q=0 does not
    refuse a type."""
    for _, typ, sub in _accept_clauses(accept or "*/*"):
        if typ not in ("application", "*"):
            continue
        for want, answer in _V2_ACCEPTED:
            if sub in (want, "*"):
                return answer
    return None


class _V2Forms:
    """What one generation of the JSON document is served with."""

    def __init__(self, doc: bytes) -> None:
        self.doc = doc
        self.etag = f'"{doc_hash(doc)}"'
        self.modified = int(time.time())
        self._protobuf: bytes | None = None

    def protobuf(self) -> bytes:
        if self._protobuf is None:
            self._protobuf = openapi_pb.encode(orjson.loads(self.doc))
        return self._protobuf


_v2_forms: dict[int, _V2Forms] = {}


def _forms(doc: bytes) -> _V2Forms:
    hit = _v2_forms.get(id(doc))
    if hit is None or hit.doc is not doc:
        if len(_v2_forms) >= _CACHE_MAX:
            _v2_forms.pop(next(iter(_v2_forms)))
        hit = _v2_forms[id(doc)] = _V2Forms(doc)
    return hit


def _etag_listed(header: str, etag: str) -> bool:
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _not_modified(headers: Mapping[str, str], forms: _V2Forms) -> bool:
    """RFC 7232 as Go's http.ServeContent applies it to GET: If-None-Match
    when given, else If-Modified-Since."""
    inm = headers.get("If-None-Match")
    if inm is not None:
        return _etag_listed(inm, forms.etag)
    ims = headers.get("If-Modified-Since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return forms.modified <= since
    return False


def serve_v2(doc: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for GET /openapi/v2, given the JSON document
    (as returned by ``openapi_v2``, the same bytes object for one generation)
    and the request headers. The protobuf form is encoded on first request
    and kept with the JSON."""
    out = {"Vary": "Accept"}
    media = v2_media_type(headers.get("Accept", ""))
    if media is None:
        return 406, out, b""
    forms = _forms(doc)
    body = doc
    if media == V2_PROTOBUF:
        try:
            body = forms.protobuf()
        except openapi_pb.ProtobufUnavailable as e:
            log.error("cannot serve /openapi/v2 as protobuf: %s", e)
            return 503, out, b""
    out["ETag"] = forms.etag
    if _not_modified(headers, forms):
        return 304, out, b""
    out["Content-Type"] = media
    out["Last-Modified"] = email.utils.formatdate(forms.modified, usegmt=True)
    return 200, out, body
