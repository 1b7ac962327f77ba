"""HTTP handlers for resource paths: parse the request, call the Registry,
encode the answer in the format the client asked for (JSON, YAML, Table,
PartialObjectMetadata), and stream watches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pinnace.api import apply as ssa
from pinnace.api import crdschema, field, fieldcheck, selectors
from pinnace.api import patch as patches
from pinnace.api.resources import ResourceInfo
from pinnace.storage.interface import CompactedError, KeyValue

from . import admission, codec, listoptions, reviews, status, tables
from .audit import BODY_KEY as AUDIT_BODY
from .audit import annotations_of as audit_annotations
from .authn import USER_INFO, USER_NAME, Authenticator, User
from .authz import Authorizer
from .metrics import WATCH_PATH
from .nodeproxy import NodeProxy
from .podproxy import PodProxy
from .registry import ResourceTable
from .rest import DeleteOptions, Options, Registry, apply_conflict, now_rfc3339
from .rowcache import RowCache
from .status import APIError
from .watchcache import CacheEvent, WatchCache, WatchStream

log = logging.getLogger("pinnace.apiserver.handlers")

PROTOBUF = "application/vnd.kubernetes.protobuf"

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}

# Resources whose DELETE answers with the deleted object rather than a
# Status (upstream's ReturnDeletedObject; clients decode accordingly).
_RETURNS_DELETED = {("", "pods"), ("", "services"), ("", "persistentvolumeclaims"),
                    ("", "persistentvolumes"), ("", "serviceaccounts"), ("", "resourcequotas")}

# Namespace subresources (everything else after /namespaces/{ns}/ is a resource).
_NS_SUBRESOURCES = {"status", "finalize"}


@dataclass
class Target:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str
    path: str = ""  # for nodes, pods and services NAME/proxy/PATH: what follows proxy/


@dataclass
class Format:
    kind: str  # "json" | "yaml" | "table" | "partial" | "protobuf"
    content_type: str
    # For "protobuf": the format of a later acceptable clause ("json" or
    # "yaml"), for what protobuf cannot carry (a custom resource).
    fallback: str = ""


_JSON = Format("json", "application/json")
_PROTOBUF_OR_JSON = Format("protobuf", PROTOBUF, "json")
_formats: dict[str, Format] = {}


def negotiate(accept: str) -> Format:
    """The response format for an Accept header, as kube-apiserver picks it:
    the first clause it can serve wins, so ``application/vnd.kubernetes.protobuf,
    application/json`` (client-go's typed clients, kubectl describe) gets
    protobuf. Remembered per header: clients send a handful of them."""
    fmt = _formats.get(accept)
    if fmt is None:
        fmt = _negotiate(accept)
        if len(_formats) < 256:
            _formats[accept] = fmt
    return fmt


def _negotiate(accept: str) -> Format:
    if not accept:
        return _JSON
    protobuf_first = False
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        opts = dict(p.split("=", 1) for p in params if "=" in p)
        as_ = opts.get("as", "")
        if media == PROTOBUF and not as_:
            protobuf_first = True
            continue
        if media in ("application/json", "*/*", "application/*"):
            if as_ == "Table" and opts.get("g") == "meta.k8s.io":
                return Format("table", f"application/json;as=Table;v={opts.get('v', 'v1')};"
                                       f"g=meta.k8s.io")
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Format("partial", f"application/json;as={as_};v=v1;g=meta.k8s.io")
            if as_:
                continue  # a representation we do not offer; try the next one
            return _PROTOBUF_OR_JSON if protobuf_first else _JSON
        if media in ("application/yaml", "application/x-yaml", "text/yaml"):
            if protobuf_first:
                return Format("protobuf", PROTOBUF, "yaml")
            return Format("yaml", "application/yaml")
    if protobuf_first:
        return Format("protobuf", PROTOBUF)
    raise status.not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/vnd.kubernetes.protobuf")


_YAML = Format("yaml", "application/yaml")


def served_format(fmt: Format, info: ResourceInfo | None) -> Format:
    """Protobuf is for built-in kinds only (as upstream's): a custom resource
    gets the next acceptable format, or 406 when there is none."""
    if fmt.kind != "protobuf" or info is None or info.crd is None:
        return fmt
    return _fallback(fmt, "custom resources are served as JSON or YAML only")


def _fallback(fmt: Format, why: str) -> Format:
    if fmt.fallback == "json":
        return _JSON
    if fmt.fallback == "yaml":
        return _YAML
    raise status.not_acceptable(why)


def _field_manager_errors(manager: str) -> list[field.FieldError]:
    """ValidateFieldManager: at most 128 bytes, printable characters only."""
    errs: list[field.FieldError] = []
    if len(manager.encode()) > 128:
        errs.append(field.too_long("fieldManager", manager, 128))
    pos = 0
    for ch in manager:
        if not ch.isprintable():
            errs.append(field.invalid("fieldManager", manager,
                                      f"invalid character U+{ord(ch):04X} (at position {pos})"))
        pos += len(ch.encode())
    return errs


# DeleteOptions fields -> (JSON type, Go type), for the errors Go's decoder gives.
_DELETE_OPTION_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "gracePeriodSeconds": (int, "int64"), "preconditions": (dict, "v1.Preconditions"),
    "orphanDependents": (bool, "bool"), "propagationPolicy": (str, "v1.DeletionPropagation"),
    "dryRun": (list, "[]string"), "ignoreStoreReadErrorWithClusterBreakingPotential":
    (bool, "bool"), "apiVersion": (str, "string"), "kind": (str, "string")}


def check_delete_options(body: dict[str, Any], where: str) -> None:
    """400, as kube-apiserver's decoder answers, for DeleteOptions fields of
    the wrong JSON type (rather than a 500 further on)."""
    def wrong(path: str, value: Any, go_type: str) -> APIError:
        return status.bad_request(f"json: cannot unmarshal {fieldcheck.json_kind(value)} into Go struct "
                                  f"field {where}.{path} of type {go_type}")

    if not isinstance(body, dict):
        raise status.bad_request(f"json: cannot unmarshal {fieldcheck.json_kind(body)} into Go value of "
                                 f"type v1.DeleteOptions")
    for name, (typ, go_type) in _DELETE_OPTION_TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise wrong(name, value, go_type)
    for key in ("uid", "resourceVersion"):
        value = (body.get("preconditions") or {}).get(key)
        if value is not None and not isinstance(value, str):
            raise wrong(f"preconditions.{key}", value, "string")
    for item in body.get("dryRun") or []:
        if not isinstance(item, str):
            raise wrong("dryRun", item, "string")


def _bool(v: str | None) -> bool:
    return v is not None and v.lower() in ("true", "1")


class ResourceHandlers:
    def __init__(self, registry: Registry, table: ResourceTable, watches: WatchCache,
                 authn: Authenticator, authz: Authorizer):
        self.registry = registry
        self.table = table
        self.watches = watches
        self.authn = authn
        self.authz = authz
        self.rows = RowCache()
        self.node_proxy: NodeProxy | None = None  # pods/log, exec, attach: set by the APIServer
        self.pod_proxy: PodProxy | None = None  # pods and services NAME/proxy: likewise

    # -- routing -----------------------------------------------------------

    def resolve(self, parts: list[str]) -> Target | None:
        """parts: path segments after /api/v1 or /apis/G/V, plus (group, version)."""
        group, version, segs = parts[0], parts[1], parts[2:]
        ns: str | None = None
        if len(segs) >= 3 and segs[0] == "namespaces" and segs[2] not in _NS_SUBRESOURCES:
            ns, segs = segs[1], segs[2:]
        if not segs:
            return None
        info = self.table.lookup(group, version, segs[0])
        if info is None:
            return None
        name = segs[1] if len(segs) > 1 else None
        sub = "/".join(segs[2:])
        if ns is not None and not info.namespaced:
            return None
        if "proxy" in info.connect and len(segs) > 2 and segs[2] == "proxy":
            if info.namespaced and ns is None:
                return None  # pods and services are proxied within their namespace only
            return Target(info, ns, name, "proxy", "/".join(segs[3:]))
        if sub and sub not in info.subresources and sub not in info.connect:
            return None
        return Target(info, ns, name, sub)

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        m = request.method
        if target.info.group == "" and target.info.resource == "endpoints":
            # Every response about it says so, as kube-apiserver's deprecation filter does.
            request[DEPRECATED] = ENDPOINTS_DEPRECATION
        elif target.info.crd is not None:
            # A deprecated CRD version: its deprecationWarning, or upstream's default text.
            text = crdschema.deprecation_warning(target.info.crd, target.info.version)
            if text:
                request[DEPRECATED] = text
        watching = _bool(request.query.get("watch")) or request.get(WATCH_PATH, False)
        if target.info.resource == "componentstatuses" and target.info.group == "":
            return await self.component_statuses(request, target)
        if target.info.virtual:
            if m != "POST" or target.name is not None:
                raise status.method_not_allowed()
            body = await self.body(request)
            if not isinstance(body, dict):
                raise status.bad_request("the body of the request must be an object")
            user = request.get(USER_INFO) or User("system:anonymous")
            answer = await reviews.answer(target.info, target.namespace, body, user, self.authn,
                                          self.authz)
            return self.respond(request, answer, 201)
        if target.name is None:
            if m == "GET":
                if watching:
                    return await self.watch(request, target)
                return await self.list(request, target)
            if m == "POST":
                return await self.create(request, target)
            if m == "DELETE":
                return await self.delete_collection(request, target)
            raise status.method_not_allowed()
        if target.subresource == "scale":
            return await self.scale(request, target)
        if target.subresource == "token":
            return await self.token_request(request, target)
        if target.subresource in ("binding", "eviction") or (
                target.info.resource == "bindings" and m == "POST"):
            return await self.pod_action(request, target)
        if target.subresource in ("log", "exec", "attach", "portforward") and \
                self.node_proxy is not None:
            return await self.node_proxy.handle(request, target)
        if target.subresource == "proxy" and target.info.resource == "nodes" and \
                self.node_proxy is not None:
            return await self.node_proxy.node(request, target.name or "", target.path)
        if target.subresource == "proxy" and target.info.resource in ("pods", "services") and \
                self.pod_proxy is not None:
            return await self.pod_proxy.handle(request, target)
        if target.subresource in target.info.connect:
            raise APIError(400, "BadRequest",
                           f"pod {target.name} has no running containers (no node runs it yet)")
        if m == "GET":
            if target.subresource not in ("", "status", "approval", "ephemeralcontainers",
                                          "resize"):
                raise status.method_not_allowed()
            if watching:
                return await self.watch(request, target)
            return await self.get(request, target)
        if m == "PUT":
            return await self.update(request, target)
        if m == "PATCH":
            return await self.patch(request, target)
        if m == "DELETE" and not target.subresource:
            return await self.delete(request, target)
        raise status.method_not_allowed()

    # -- encoding ----------------------------------------------------------

    async def component_statuses(self, request: web.Request, t: Target) -> web.Response:
        """`kubectl get componentstatuses`: the datastore answers, and the
        scheduler and controller manager hold fresh leader Leases (upstream
        probes their healthz ports; pinnace's components may run anywhere)."""
        if request.method != "GET" or _bool(request.query.get("watch")):
            raise status.method_not_allowed()
        request[DEPRECATED] = "v1 ComponentStatus is deprecated in v1.19+"
        items = [await self._lease_health("scheduler", "kube-scheduler"),
                 await self._lease_health("controller-manager", "kube-controller-manager")]
        try:
            await self.registry.store.revision()
            items.append(_component("etcd-0", None))
        except Exception as e:  # the datastore's own failure, whatever it is, is the answer
            items.append(_component("etcd-0", f"the datastore does not answer: {e}"))
        if t.name is not None:
            found = [i for i in items if i["metadata"]["name"] == t.name]
            if not found:
                raise status.not_found("componentstatuses", "", t.name)
            return self.respond(request, found[0], info=t.info)
        fmt = negotiate(request.headers.get("Accept", ""))
        if fmt.kind == "table":
            out = make_table(t.info, items, dt.datetime.now(dt.UTC),
                             request.query.get("includeObject", "Metadata"), {})
            resp = web.Response(body=codec.dumps(out))
            resp.headers["Content-Type"] = fmt.content_type
            return resp
        return self.respond(request, {"kind": "ComponentStatusList", "apiVersion": "v1",
                                      "metadata": {}, "items": items})

    async def _lease_health(self, name: str, lease: str) -> dict[str, Any]:
        kv = await self.registry.store.get(
            f"/registry/coordination.k8s.io/leases/kube-system/{lease}")
        if kv is None:
            return _component(name, f"no {lease} has ever held its leader Lease")
        spec = orjson.loads(kv.value).get("spec") or {}
        renewed = spec.get("renewTime") or ""
        try:
            age = time.time() - dt.datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return _component(name, f"its Lease kube-system/{lease} has no renewTime")
        if age > float(spec.get("leaseDurationSeconds") or 15):
            return _component(name, f"its leader last renewed Lease kube-system/{lease} "
                                    f"{int(age)}s ago")
        return _component(name, None)

    def respond(self, request: web.Request, obj: Any, code: int = 200,
                opts: Options | None = None, info: ResourceInfo | None = None,
                raw: bytes | None = None) -> web.Response:
        fmt = served_format(negotiate(request.headers.get("Accept", "")), info)
        if fmt.kind == "table" and info is not None and isinstance(obj, dict) \
                and obj.get("kind") != "Status":
            obj = make_table(info, [obj], dt.datetime.now(dt.UTC),
                             request.query.get("includeObject", "Metadata"),
                             {"resourceVersion": obj["metadata"].get("resourceVersion", "")})
            raw = None
        elif fmt.kind == "partial" and isinstance(obj, dict) and obj.get("kind") != "Status":
            obj = tables.partial_object_metadata(obj)
            raw = None
        headers = {}
        if opts is not None and opts.warnings:
            headers["Warning"] = ", ".join(warning_header(w) for w in opts.warnings)
        if fmt.kind == "protobuf":
            try:
                pb = encode_protobuf(orjson.loads(raw) if raw is not None else obj)
            except APIError as e:
                fmt = _fallback(fmt, e.message)
            else:
                return web.Response(body=pb, status=code, headers=headers,
                                    content_type=PROTOBUF)
        body = raw if raw is not None else codec.dumps(obj)
        if fmt.kind == "yaml":
            return web.Response(body=codec.to_yaml(body), status=code,
                                content_type="application/yaml", headers=headers)
        resp = web.Response(body=body, status=code, headers=headers)
        resp.headers["Content-Type"] = fmt.content_type if fmt.kind != "yaml" \
            else "application/yaml"
        if fmt.kind in ("table", "partial") and (info is None or (
                isinstance(obj, dict) and obj.get("kind") == "Status")):
            resp.headers["Content-Type"] = "application/json"
        return resp

    def options(self, request: web.Request, kind: str = "CreateOptions",
                patch_type: str = "") -> Options:
        """The write options of a request, checked as upstream validates its
        ``kind`` (CreateOptions, UpdateOptions or PatchOptions): 422 Invalid."""
        q = request.query
        dry = q.getall("dryRun", [])
        fv = q.get("fieldValidation", "")
        manager = q.get("fieldManager", "")
        errs: list[field.FieldError] = []
        if kind == "PatchOptions":
            if patch_type != "apply":
                if "force" in q:
                    errs.append(field.forbidden("force", "may not be specified for non-apply patch"))
            elif not manager:
                # kubectl sends "kubectl"; a controller must name itself.
                errs.append(field.required("fieldManager", "is required for apply patch"))
        errs += _field_manager_errors(manager)
        if any(d != "All" for d in dry):
            errs.append(field.not_supported("dryRun", dry, ["All"]))
        if fv not in ("", "Ignore", "Strict", "Warn"):
            errs.append(field.not_supported("fieldValidation", fv,
                                            ["", "Ignore", "Strict", "Warn"]))
        if errs:
            raise status.invalid(kind, "meta.k8s.io", "", errs)
        if not manager:
            manager = ssa.manager_or_user_agent("", request.headers.get("User-Agent", ""))
        return Options(dry_run=bool(dry), field_manager=manager, field_validation=fv or "Warn",
                       force=_bool(q.get("force")), user=request.get(USER_NAME, ""),
                       userinfo=request.get(USER_INFO),
                       annotations=audit_annotations(request))

    async def body(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > codec.MAX_BODY:
            raise status.too_large()
        data = await _read_body(request)
        if not data:
            raise status.bad_request("the body of the request was empty")
        return codec.parse_body(data, request.headers.get("Content-Type", ""))

    # -- verbs -------------------------------------------------------------

    async def get(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        kv = await self.registry.get_kv(t.info, t.namespace, t.name)
        if served_format(negotiate(request.headers.get("Accept", "")), t.info).kind == "json":
            # Straight from the stored bytes: nothing to decode.
            return self.respond(request, None, info=t.info,
                                raw=self.registry.served_bytes(t.info, kv))
        obj = self.registry.to_served(t.info, codec.decode_stored(kv.value, kv.mod_revision))
        return self.respond(request, obj, info=t.info)

    async def list(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        fmt = served_format(negotiate(request.headers.get("Accept", "")), t.info)
        label_sel, field_sel = _selectors(t.info, q)
        listoptions.validate(q, watch=False)
        limit = listoptions.limit(q)
        start, revision = "", 0
        cont = q.get("continue", "")
        rv = q.get("resourceVersion", "")
        if cont:
            start, revision = listoptions.decode_continue(cont, t.info.list_prefix(t.namespace))
        elif rv and rv != "0" and q.get("resourceVersionMatch") == "Exact":
            revision = _rv(rv)
            await self._wait_for_revision(revision)
        elif rv and rv != "0":
            await self._wait_for_revision(_rv(rv))
        filtering = label_sel is not None or field_sel is not None
        include = q.get("includeObject") or "Metadata"
        # A Table of whole collections is made of remembered rows (rowcache).
        table_rows = fmt.kind == "table" and not filtering and include in ("Metadata", "None")
        raw_kvs: list[KeyValue] = []
        items: list[dict[str, Any]] = []
        need_objs = not table_rows and (
            filtering or fmt.kind in ("table", "partial", "yaml", "protobuf") or
            bool(t.info.storage_version) or t.info.crd is not None)
        more, remaining, list_rev = False, 0, 0
        last_key = start
        # Selectors filter after reading, so a limited page may need several reads.
        while True:
            page = limit - (len(items) if need_objs else len(raw_kvs)) if limit else 0
            try:
                kvs, list_rev, more, remaining = await self.registry.list_kvs(
                    t.info, t.namespace, limit=page, start=last_key, revision=revision)
            except APIError as e:
                if e.code == 410 and cont:
                    raise listoptions.continue_expired(start) from None
                raise
            revision = list_rev
            if not need_objs:
                raw_kvs.extend(kvs)
            else:
                for kv in kvs:
                    obj = self.registry.to_served(t.info, codec.decode_stored(kv.value,
                                                                              kv.mod_revision))
                    if filtering and not _matches(t.info, obj, label_sel, field_sel):
                        continue
                    items.append(obj)
            if kvs:
                last_key = kvs[-1].key + "\x00"
            if not (limit and more and (len(items) if need_objs else len(raw_kvs)) < limit):
                break
        meta: dict[str, Any] = {"resourceVersion": str(list_rev)}
        if limit and more:
            meta["continue"] = listoptions.encode_continue(last_key, list_rev)
            if not filtering:
                meta["remainingItemCount"] = remaining
        now = dt.datetime.now(dt.UTC)
        if table_rows:
            return self._table_from_rows(t.info, raw_kvs, now, include, meta, fmt)
        if fmt.kind == "table":
            out = make_table(t.info, items, now, include, meta)
            resp = web.Response(body=codec.dumps(out))
            resp.headers["Content-Type"] = fmt.content_type
            return resp
        if fmt.kind == "partial":
            out = tables.partial_object_metadata_list(items, meta)
            resp = web.Response(body=codec.dumps(out))
            resp.headers["Content-Type"] = fmt.content_type
            return resp
        if fmt.kind == "protobuf":
            try:
                return web.Response(body=encode_protobuf_list(
                    t.info.group_version, t.info.kind + "List", meta, items),
                    content_type=PROTOBUF)
            except APIError as e:
                fmt = _fallback(fmt, e.message)
        head = b'{"kind":"%s","apiVersion":"%s","metadata":%s,"items":[' % (
            (t.info.kind + "List").encode(), t.info.group_version.encode(), codec.dumps(meta))
        items_raw = [codec.with_revision(kv.value, kv.mod_revision) for kv in raw_kvs]
        if not need_objs and len(items_raw) > _STREAM_ITEMS:
            return await _stream_list(request, head, items_raw)
        if need_objs:
            body = head + b",".join(codec.dumps(o) for o in items) + b"]}"
        else:
            body = head + b",".join(items_raw) + b"]}"
        if fmt.kind == "yaml":
            return web.Response(body=codec.to_yaml(body), content_type="application/yaml")
        return web.Response(body=body, content_type="application/json")

    async def create(self, request: web.Request, t: Target) -> web.Response:
        opts = self.options(request)
        obj = await self.body(request)
        created = await self.registry.create(t.info, t.namespace, obj, opts)
        return self.respond(request, created, 201, opts, t.info)

    async def update(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        opts = self.options(request, "UpdateOptions")
        obj = await self.body(request)
        out = await self.registry.update(t.info, t.namespace, t.name, obj, opts, t.subresource)
        return self.respond(request, out, 200, opts, t.info)

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        ct = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        patch_type = PATCH_TYPES.get(ct)
        if patch_type is None or patch_type == "apply-cbor":
            raise status.unsupported_media(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml, application/strategic-merge-patch+json")
        body = await self.body(request)
        opts = self.options(request, "PatchOptions", patch_type)
        out, created = await self.registry.patch(t.info, t.namespace, t.name, patch_type, body,
                                                 opts, t.subresource)
        return self.respond(request, out, 201 if created else 200, opts, t.info)

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        dopts = await self.delete_options(request)
        obj, gone = await self.registry.delete(t.info, t.namespace, t.name, dopts)
        if gone and (t.info.group, t.info.resource) not in _RETURNS_DELETED \
                and t.info.crd is None:
            return self.respond(request, status.success({
                "name": t.name, **({"group": t.info.group} if t.info.group else {}),
                "kind": t.info.resource, "uid": obj["metadata"].get("uid", "")}))
        return self.respond(request, obj, info=t.info)

    async def delete_options(self, request: web.Request) -> DeleteOptions:
        q = request.query
        body: dict[str, Any] = {}
        if request.can_read_body:
            data = await _read_body(request)
            if data:
                parsed = codec.parse_body(data, request.headers.get("Content-Type", ""))
                if isinstance(parsed, dict):
                    body = parsed
        check_delete_options(body, "DeleteOptions")
        grace = body.get("gracePeriodSeconds")
        if "gracePeriodSeconds" in q:
            grace = listoptions.int64(q, "gracePeriodSeconds")
        pre = body.get("preconditions") or {}
        propagation = q.get("propagationPolicy") or body.get("propagationPolicy") or ""
        orphan = q.get("orphanDependents", body.get("orphanDependents"))
        dry = q.getall("dryRun", []) or body.get("dryRun") or []
        # ValidateDeleteOptions: 422 Invalid, as for the other write options.
        errs: list[field.FieldError] = []
        if propagation and orphan is not None:
            errs.append(field.invalid("propagationPolicy", propagation,
                                      "orphanDependents and deletionPropagation cannot be both set"))
        if propagation not in ("", "Orphan", "Background", "Foreground"):
            errs.append(field.not_supported("propagationPolicy", propagation,
                                            ["Foreground", "Background", "Orphan", "nil"]))
        if not isinstance(dry, list) or any(d != "All" for d in dry):
            errs.append(field.not_supported("dryRun", dry, ["All"]))
        if errs:
            raise status.invalid("DeleteOptions", "meta.k8s.io", "", errs)
        if not propagation and orphan in (True, "true"):
            propagation = "Orphan"
        return DeleteOptions(grace_period=grace, propagation=propagation,
                             uid=pre.get("uid") or "", resource_version=pre.get(
                                 "resourceVersion") or "", dry_run=bool(dry),
                             userinfo=request.get(USER_INFO))

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        dopts = await self.delete_options(request)
        label_sel, field_sel = _selectors(t.info, request.query)
        kvs, rev, _, _ = await self.registry.list_kvs(t.info, t.namespace)
        deleted = []
        for kv in kvs:
            obj = codec.decode_stored(kv.value, kv.mod_revision)
            if not _matches(t.info, obj, label_sel, field_sel):
                continue
            try:
                out, _ = await self.registry.delete(t.info, obj["metadata"].get("namespace"),
                                                    obj["metadata"]["name"], dopts)
                deleted.append(out)
            except APIError as e:
                if e.code != 404:
                    raise
        body = {"kind": t.info.kind + "List", "apiVersion": t.info.group_version,
                "metadata": {"resourceVersion": str(rev)}, "items": deleted}
        return self.respond(request, body)

    # -- subresources ------------------------------------------------------

    async def scale(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        info = t.info
        if request.method == "GET":
            obj = await self.registry.get(info, t.namespace, t.name)
            return self._respond_scale(request, info, _to_scale(info, obj))
        if request.method not in ("PUT", "PATCH"):
            raise status.method_not_allowed()
        body = await self.body(request)
        if request.method == "PUT":
            opts = self.options(request, "UpdateOptions")

            def replicas_of(current_scale: dict[str, Any]) -> Any:
                if not isinstance(body, dict) or body.get("kind") not in ("Scale", None):
                    raise status.bad_request("expected a Scale object")
                rv = (body.get("metadata") or {}).get("resourceVersion")
                if rv and rv != current_scale["metadata"]["resourceVersion"]:
                    raise status.conflict(info.resource, info.group, t.name or "", status.STALE)
                return (body.get("spec") or {}).get("replicas")
        else:
            ct = request.headers.get("Content-Type", "").split(";")[0].strip()
            ptype = PATCH_TYPES.get(ct)
            opts = self.options(request, "PatchOptions", ptype or "")

            if ptype == "apply":
                return await self._apply_scale(request, t, body, opts)

            def replicas_of(current_scale: dict[str, Any]) -> Any:
                try:
                    if ptype == "json":
                        out = patches.json_patch(current_scale, body)
                    elif ptype in ("merge", "strategic"):
                        out = patches.merge_patch(current_scale, body)
                    else:
                        raise status.unsupported_media("unsupported patch type for scale")
                except patches.PatchError as e:
                    raise status.APIError(422, "Invalid", str(e)) from None
                return (out.get("spec") or {}).get("replicas")

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            served = self.registry.to_served(info, old)
            replicas = replicas_of(_to_scale(info, served))
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise status.invalid("Scale", "autoscaling", t.name or "", [
                    field.invalid("spec.replicas", replicas,
                                  "must be greater than or equal to 0")])
            _set_path(served, _scale_paths(info)[0], replicas)
            return self.registry.to_storage(info, served)

        kv = await self.registry.get_kv(info, t.namespace, t.name)
        # Admission sees the scale subresource, so rules for the main resource leave it be.
        out = await self.registry.guaranteed_update(info, t.namespace, t.name, kv, mutate, opts,
                                                    "scale")
        return self._respond_scale(request, info, _to_scale(info, out), opts)

    async def _apply_scale(self, request: web.Request, t: Target, body: Any,
                           opts: Options) -> web.Response:
        """Server-side apply to a Scale, as upstream's ScaleHandler does it:
        the parent's managers of the replicas field are the Scale's managers
        of spec.replicas (a conflict names them), and the applier ends up in
        the parent's managedFields with ``subresource: scale``."""
        info = t.info
        if not isinstance(body, dict):
            raise status.bad_request("expected a Scale object")
        version = body.get("apiVersion")
        if version != "autoscaling/v1" or body.get("kind") != "Scale":
            raise status.bad_request(
                "Incorrect version specified in apply patch. Specified patch version: "
                f"{version if isinstance(version, str) else ''}, expected: autoscaling/v1")
        spec_path = _scale_paths(info)[0]
        replicas_path = tuple(spec_path.strip(".").split("."))

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            served = self.registry.to_served(info, old)
            meta = served["metadata"]
            parent = meta.get("managedFields") or []
            scale = _to_scale(info, served)
            scale["metadata"]["managedFields"] = ssa.scale_view(parent, replicas_path)
            now = now_rfc3339()
            try:
                out = ssa.server_side_apply(scale, body, opts.field_manager, opts.force, None,
                                            now, subresource="scale")
            except ssa.ApplyConflict as e:
                raise apply_conflict(info, t.name or "", e) from None
            except ssa.ApplyError as e:
                raise status.bad_request(str(e)) from None
            replicas = (out.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise status.invalid("Scale", "autoscaling", t.name or "", [
                    field.invalid("spec.replicas", replicas,
                                  "must be greater than or equal to 0")])
            _set_path(served, spec_path, replicas)
            managed = ssa.scale_to_parent(parent, out["metadata"].get("managedFields"),
                                          replicas_path, info.group_version, now)
            if managed:
                meta["managedFields"] = managed
            else:
                meta.pop("managedFields", None)
            return self.registry.to_storage(info, served)

        assert t.name is not None
        kv = await self.registry.get_kv(info, t.namespace, t.name)
        out = await self.registry.guaranteed_update(info, t.namespace, t.name, kv, mutate, opts,
                                                    "scale", manage=False)
        return self._respond_scale(request, info, _to_scale(info, out), opts)

    def _respond_scale(self, request: web.Request, info: ResourceInfo, scale: dict[str, Any],
                       opts: Options | None = None) -> web.Response:
        """A Scale, or the Table of one (``kubectl get --subresource=scale``):
        upstream prints a built-in kind's Scale with its Scale printer (Name,
        Desired, Available, Age); a custom resource's goes through the CRD's
        own columns."""
        fmt = negotiate(request.headers.get("Accept", ""))
        if fmt.kind == "table" and info.crd is not None:
            return self.respond(request, scale, 200, opts, info)
        if fmt.kind != "table":
            return self.respond(request, scale, 200, opts)
        try:
            table = tables.table(*tables.SCALE, [scale], dt.datetime.now(dt.UTC),
                                 request.query.get("includeObject", "Metadata"),
                                 {"resourceVersion": scale["metadata"].get("resourceVersion", "")})
        except ValueError as e:
            raise status.bad_request(str(e)) from None
        headers = {"Content-Type": fmt.content_type}
        if opts is not None and opts.warnings:
            headers["Warning"] = ", ".join(warning_header(w) for w in opts.warnings)
        return web.Response(body=codec.dumps(table), headers=headers)

    async def pod_action(self, request: web.Request, t: Target) -> web.Response:
        if request.method != "POST":
            raise status.method_not_allowed()
        body = await self.body(request)
        if not isinstance(body, dict):
            raise status.bad_request("expected an object")
        pods = self.table.lookup("", "v1", "pods")
        assert pods is not None
        opts = self.options(request)
        name = t.name if t.subresource else (body.get("metadata") or {}).get("name")
        if not name:
            raise status.bad_request("name is required")
        if t.subresource == "eviction":
            return await self._evict(request, pods, t.namespace, name, body)
        target = body.get("target") or {}
        node = target.get("name")
        if not node:
            raise status.invalid("Binding", "", name, [field.required("target.name")])

        want = body.get("metadata") or {}

        def bind(old: dict[str, Any]) -> dict[str, Any]:
            spec = old.setdefault("spec", {})
            meta = old["metadata"]
            # Every refusal is a Conflict on pods/binding, as upstream words them.
            # The scheduler names the pod's uid, so a pod deleted and made
            # again under the same name is not bound to the old pod's node.
            status.check_preconditions("pods/binding", "", name, meta, want.get("uid"),
                                       want.get("resourceVersion"))
            if meta.get("deletionTimestamp"):
                raise status.conflict("pods/binding", "", name,
                                      f"pod {name} is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise status.conflict("pods/binding", "", name,
                                      f"pod {name} is already assigned to node "
                                      f"\"{spec['nodeName']}\"")
            if spec.get("schedulingGates"):
                raise status.conflict("pods/binding", "", name,
                                      f"pod {name} has non-empty .spec.schedulingGates")
            spec["nodeName"] = node
            st = old.setdefault("status", {})
            # A nomination is stale once the pod is placed (ClearingNominatedNodeNameAfterBinding).
            st.pop("nominatedNodeName", None)
            scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                         "lastTransitionTime": dt.datetime.now(dt.UTC).strftime(
                             "%Y-%m-%dT%H:%M:%SZ")}
            conds = list(st.get("conditions") or [])
            at = next((i for i, c in enumerate(conds) if c.get("type") == "PodScheduled"), None)
            if at is None:
                conds.append(scheduled)
            else:
                conds[at] = scheduled  # in its place, as upstream's UpdatePodCondition
            st["conditions"] = conds
            return old

        kv = await self.registry.get_kv(pods, t.namespace, name)
        # Upstream binds in storage, past the field manager: no managedFields entry.
        await self.registry.guaranteed_update(pods, t.namespace, name, kv, bind, opts, "binding",
                                              manage=False)
        return self.respond(request, status.success(), 201)

    async def token_request(self, request: web.Request, t: Target) -> web.Response:
        """POST serviceaccounts/<name>/token: a bound, expiring token."""
        if request.method != "POST":
            raise status.method_not_allowed()
        assert t.name is not None
        body = await self.body(request)
        if not isinstance(body, dict):
            raise status.bad_request("expected a TokenRequest")
        sa = await self.registry.get(t.info, t.namespace, t.name)
        await self.registry.admission.validate(admission.Attributes(
            admission.CREATE, t.info, t.namespace or "", t.name, body, None,
            request.get(USER_INFO), "token"))
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise status.invalid("TokenRequest", "authentication.k8s.io", t.name, [
                field.invalid("spec.expirationSeconds", seconds,
                              "may not specify a duration less than 10 minutes")])
        seconds = min(seconds, 48 * 3600)
        bound = spec.get("boundObjectRef") or None
        if bound:
            resource = {"Pod": "pods", "Secret": "secrets"}.get(bound.get("kind", ""))
            info = self.table.lookup("", "v1", resource) if resource else None
            if info is None:
                raise status.bad_request(f"cannot bind token to a {bound.get('kind')}")
            target = await self.registry.get(info, t.namespace, bound.get("name", ""))
            if bound.get("uid") and bound["uid"] != target["metadata"]["uid"]:
                raise status.conflict(resource or "", "", bound.get("name", ""),
                                      "the UID in the bound object reference does not match")
            bound = {**bound, "uid": target["metadata"]["uid"]}
        assert self.authn.issuer is not None
        token, exp = self.authn.issuer.issue(t.namespace or "default", t.name,
                                             sa["metadata"]["uid"],
                                             list(spec.get("audiences") or []), seconds, bound)
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": t.name, "namespace": t.namespace,
                            "creationTimestamp": None},
               "spec": {**spec, "expirationSeconds": seconds,
                        "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"
                                                               ".cluster.local"]},
               "status": {"token": token, "expirationTimestamp": dt.datetime.fromtimestamp(
                   exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
        return self.respond(request, out, 201)

    async def _evict(self, request: web.Request, pods: ResourceInfo, ns: str | None, name: str,
                     body: dict[str, Any]) -> web.Response:
        """Evict a pod as upstream's eviction REST does: terminal, pending and
        terminating pods go at once; otherwise the one PodDisruptionBudget
        covering the pod must allow a disruption, which the eviction takes
        (disruptionsAllowed down by one, the pod in disruptedPods) by a
        compare-and-swap on the budget before the pod is marked
        DisruptionTarget and deleted."""
        if (body.get("metadata") or {}).get("name") != name:
            raise status.bad_request("name in URL does not match name in Eviction object")
        do = body.get("deleteOptions") or {}
        check_delete_options(do, "Eviction.deleteOptions")
        pre = do.get("preconditions") or {}
        dopts = DeleteOptions(grace_period=do.get("gracePeriodSeconds"),
                              uid=pre.get("uid") or "",
                              resource_version=pre.get("resourceVersion") or "",
                              dry_run=bool(do.get("dryRun")
                                           or request.query.getall("dryRun", [])),
                              userinfo=request.get(USER_INFO))
        client_rv = bool(dopts.resource_version)
        pod = await self.registry.get(pods, ns, name)
        await self.registry.admission.validate(admission.Attributes(
            admission.CREATE, pods, ns or "", name, body, pod, request.get(USER_INFO),
            "eviction", dopts.dry_run))
        for attempt in range(20):
            if attempt:
                pod = await self.registry.get(pods, ns, name)
            meta, phase = pod["metadata"], (pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed", "Pending") and not meta.get(
                    "deletionTimestamp"):
                break
            # Nothing a budget guards: it has disrupted already, or never ran.
            opts = dopts
            if phase == "Pending" and not meta.get("deletionTimestamp") and not client_rv:
                # Unless it became ready meanwhile, which the budget would guard.
                opts = dataclasses.replace(dopts, resource_version=meta["resourceVersion"])
            try:
                await self._mark_and_delete(pods, ns, name, opts)
            except APIError as e:
                if e.reason == "Conflict" and not client_rv:
                    continue
                raise
            return self.respond(request, status.success(), 201)
        else:
            raise status.conflict("pods", "", name, status.STALE)
        pdb_info = self.table.lookup("policy", "v1", "poddisruptionbudgets")
        assert pdb_info is not None
        covering = [pdb for pdb in await self._pdbs(pdb_info, ns)
                    if _selects(pdb, pod["metadata"].get("labels") or {})]
        if len(covering) > 1:
            return self.respond(request, {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction "
                           "subresource does not support.", "code": 500}, 500)
        opts = dopts
        if covering:
            pdb = covering[0]
            pdb_name = pdb["metadata"]["name"]
            pst = pdb.get("status") or {}
            unhealthy_goes = not _pod_ready(pod) and (
                (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow" or
                (int(pst.get("currentHealthy") or 0) >= int(pst.get("desiredHealthy") or 0) > 0))
            if unhealthy_goes:
                # An unready pod takes nothing from the budget; it must still be
                # unready (the same version) when it is deleted.
                if not client_rv:
                    opts = dataclasses.replace(dopts,
                                               resource_version=pod["metadata"]["resourceVersion"])
            else:
                await self._take_disruption(pdb_info, ns, pdb_name, name, dopts.dry_run)
        try:
            await self._mark_and_delete(pods, ns, name, opts)
        except APIError as e:
            if e.reason == "Conflict" and covering and opts is not dopts:
                raise _too_many_requests(covering[0]["metadata"]["name"]) from None
            raise
        return self.respond(request, status.success(), 201)

    async def _pdbs(self, info: ResourceInfo, ns: str | None) -> Sequence[dict[str, Any]]:
        kvs, _, _, _ = await self.registry.list_kvs(info, ns)
        return [codec.decode_stored(kv.value, kv.mod_revision) for kv in kvs]

    async def _take_disruption(self, info: ResourceInfo, ns: str | None, pdb_name: str,
                               pod_name: str, dry_run: bool) -> None:
        """Check the budget allows a disruption and take it, on the budget as
        stored (a conflicting write means: read it again and check again)."""
        def take(pdb: dict[str, Any]) -> dict[str, Any]:
            st = pdb.setdefault("status", {})
            if int(st.get("observedGeneration") or 0) < int(
                    pdb["metadata"].get("generation") or 0):
                raise _too_many_requests(pdb_name)
            allowed = int(st.get("disruptionsAllowed") or 0)
            if allowed < 0:
                raise _pdb_forbidden(pdb_name, "pdb disruptions allowed is negative",
                                     "pdb disruptions allowed is negative")
            if len(st.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
                raise _pdb_forbidden(
                    pdb_name, "DisruptedPods map too big - too many evictions not confirmed by "
                              "PDB controller",
                    "too many pending evictions not confirmed by PDB controller")
            if allowed == 0:
                raise APIError(429, "TooManyRequests", EVICTION_REFUSED, {
                    "causes": [{"reason": "DisruptionBudget",
                                "message": _refusal_cause(pdb_name, st)}]})
            st["disruptionsAllowed"] = allowed - 1
            if allowed == 1:
                _set_condition(st, "DisruptionAllowed", "False", "InsufficientPods", "",
                               st.get("observedGeneration"))
            st.setdefault("disruptedPods", {})[pod_name] = dt.datetime.now(dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            return pdb

        kv = await self.registry.get_kv(info, ns, pdb_name)
        await self.registry.guaranteed_update(
            info, ns, pdb_name, kv, take, Options(dry_run=dry_run), "status", manage=False)

    async def _mark_and_delete(self, pods: ResourceInfo, ns: str | None, name: str,
                               dopts: DeleteOptions) -> None:
        """The DisruptionTarget condition on the pod as stored, then the delete."""
        if not dopts.dry_run:
            def mark(pod: dict[str, Any]) -> dict[str, Any]:
                meta = pod["metadata"]
                if dopts.uid and dopts.uid != meta.get("uid"):
                    raise status.conflict("Pod", "", name, (
                        f"the UID in the precondition ({dopts.uid}) does not match the UID in "
                        f"record ({meta.get('uid')}). The object might have been deleted and "
                        f"then recreated"))
                if dopts.resource_version and dopts.resource_version != meta["resourceVersion"]:
                    raise status.conflict("Pod", "", name, (
                        f"the ResourceVersion in the precondition ({dopts.resource_version}) "
                        f"does not match the ResourceVersion in record "
                        f"({meta['resourceVersion']}). The object might have been modified"))
                _set_pod_condition(pod.setdefault("status", {}), {
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"})
                return pod

            kv = await self.registry.get_kv(pods, ns, name)
            out = await self.registry.guaranteed_update(pods, ns, name, kv, mark, Options(),
                                                        "status", manage=False)
            if dopts.resource_version:
                # The condition is this eviction's own write: the delete expects it.
                dopts = dataclasses.replace(dopts,
                                            resource_version=out["metadata"]["resourceVersion"])
        await self.registry.delete(pods, ns, name, dopts)

    # -- watch -------------------------------------------------------------

    def _table_from_rows(self, info: ResourceInfo, kvs: Sequence[KeyValue], now: dt.datetime,
                         include: str, meta: dict[str, Any], fmt: Format) -> web.Response:
        def decode(kv: KeyValue) -> dict[str, Any]:
            return self.registry.to_served(info, codec.decode_stored(kv.value, kv.mod_revision))

        def build(obj: dict[str, Any], at: float) -> dict[str, Any]:
            return make_table(info, [obj], dt.datetime.fromtimestamp(at, dt.UTC), include, {},
                              headers=False)["rows"][0]  # type: ignore[no-any-return]

        at = now.timestamp()
        rows = self.rows.rows(info, kvs, at, include, decode, build)
        # The same Table with no rows gives the head; "rows" is its last key.
        empty = codec.dumps(make_table(info, [], now, include, meta))
        assert empty.endswith(b'"rows":[]}')
        resp = web.Response(body=b"".join((empty[:-3], b"[", b",".join(rows), b"]}")))
        resp.headers["Content-Type"] = fmt.content_type
        return resp

    async def _wait_for_revision(self, rv: int, patience: float = 3.0) -> None:
        """A watch from a revision the store has not reached: wait a little
        for it (another server's write may be on its way), then refuse as
        kube-apiserver does, rather than stream nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while (cur := await self.registry.store.revision()) < rv:
            if loop.time() >= deadline:
                raise APIError(504, "Timeout", f"Too large resource version: {rv}, current: {cur}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1})
            await asyncio.sleep(0.05)

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        fmt = served_format(negotiate(request.headers.get("Accept", "")), t.info)
        info = t.info
        label_sel, field_sel = _selectors(info, q)
        if t.name:
            fs = f"metadata.name={t.name}"
            field_sel = selectors.parse_field_selector(
                fs + ("," + q["fieldSelector"] if q.get("fieldSelector") else ""))
        rv = q.get("resourceVersion", "")
        send_initial = _bool(q.get("sendInitialEvents"))
        bookmarks = _bool(q.get("allowWatchBookmarks"))
        listoptions.validate(q, watch=True)
        seconds = listoptions.int64(q, "timeoutSeconds", 1800)
        timeout = float(seconds if seconds != 0 else 1800) if seconds >= 0 else 0.0
        ctype = {"yaml": "application/json", "protobuf": PROTOBUF + ";stream=watch"}.get(
            fmt.kind, fmt.content_type)
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        resp.enable_chunked_encoding()
        initial: list[dict[str, Any]] = []
        prefix = info.list_prefix(t.namespace)
        if rv in ("", "0") or send_initial:
            kvs, after, _, _ = await self.registry.list_kvs(info, t.namespace)
            if rv not in ("", "0") and _rv(rv) > after:
                after = _rv(rv)
            for kv in kvs:
                obj = self.registry.to_served(info, codec.decode_stored(kv.value,
                                                                         kv.mod_revision))
                if _matches(info, obj, label_sel, field_sel):
                    initial.append(obj)
        else:
            after = _rv(rv)
            await self._wait_for_revision(after)
        await resp.prepare(request)
        writer = _EventWriter(resp, info, fmt, self.registry, q.get("includeObject", "Metadata"))
        for obj in initial:
            await writer.object("ADDED", obj)
        if send_initial and bookmarks:
            await writer.bookmark(after, initial_end=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            stream = await self.watches.stream(prefix, after)
        except CompactedError as e:
            await writer.error(status.gone(f"too old resource version: {e.requested} "
                                           f"({e.compacted})"))
            await resp.write_eof()
            return resp
        if isinstance(stream, WatchStream):
            writer.joined = stream.cache.joined
            if label_sel is None and field_sel is None and fmt.kind != "table" \
                    and request.transport is not None:
                stream.push = functools.partial(writer.push, request.transport)
        last = after
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch = await stream.next_batch(min(remaining, 60.0) if bookmarks
                                                    else remaining)
                except CompactedError as e:
                    await writer.error(status.gone(
                        f"too old resource version: {e.requested} ({e.compacted})"))
                    break
                if batch is None:
                    break
                if not batch:
                    if bookmarks and loop.time() < deadline:
                        # A cache cursor at its end has been given everything up to the
                        # cache's newest revision; a stream of its own only what it read.
                        await writer.bookmark(max(last, self.watches.last_revision(prefix))
                                              if isinstance(stream, WatchStream) else last)
                    continue
                last = batch[-1].rev
                await writer.events(batch, label_sel, field_sel)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stream.close()
        try:
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return resp


class _EventWriter:
    def __init__(self, resp: web.StreamResponse, info: ResourceInfo, fmt: Format,
                 registry: Registry, include_object: str):
        self.resp = resp
        self.info = info
        self.fmt = fmt
        self.registry = registry
        self.include = include_object
        self.plain = fmt.kind in ("json", "yaml", "protobuf") and not info.storage_version \
            and info.crd is None
        self.headers_sent = False
        # Encoded batches shared with the other watchers of the resource for a
        # wake-up (the watch cache's); None for a watch of its own.
        self.joined: dict[Any, bytes] | None = None

    def _encode_obj(self, obj: dict[str, Any]) -> bytes:
        if self.fmt.kind == "table":
            now = dt.datetime.now(dt.UTC)
            # Column definitions go with the first event only, as upstream sends them.
            headers, self.headers_sent = not self.headers_sent, True
            return codec.dumps(make_table(self.info, [obj], now, self.include, {
                "resourceVersion": obj["metadata"].get("resourceVersion", "")}, headers))
        if self.fmt.kind == "partial":
            return codec.dumps(tables.partial_object_metadata(obj))
        return codec.dumps(obj)

    async def _send(self, type_: str, payload: bytes) -> None:
        await self.resp.write(self._frame(type_, payload))

    async def object(self, type_: str, obj: dict[str, Any]) -> None:
        await self._send(type_, self._encode_obj(obj))

    async def events(self, batch: list[CacheEvent], label_sel: Any, field_sel: Any) -> None:
        """Write a batch of events in one go; each event's encoded line is made
        once and shared by every watcher asking for the same format, and so
        is the whole batch's: without selectors, watchers woken together
        mostly get the very same events. (A batch is a run of its resource's
        events, so its first revision, length and format say what it holds.)"""
        shared = label_sel is None and field_sel is None and self.fmt.kind != "table"
        data = self._joined(batch) if shared else b"".join(
            [line for ev in batch if (line := self._line(ev, label_sel, field_sel))])
        if data:
            await self.resp.write(data)

    def _joined(self, batch: list[CacheEvent]) -> bytes:
        memo = self.joined
        key = (batch[0].rev, len(batch), self.fmt.kind, self.info.group, self.info.version,
               self.include)
        data = memo.get(key) if memo is not None else None
        if data is None:
            data = b"".join([self._line(ev, None, None) or b"" for ev in batch])
            if memo is not None:
                memo[key] = data
        return data

    def push(self, transport: asyncio.Transport, batch: list[CacheEvent]) -> bool:
        """Write a batch (no selectors, not a Table) as one HTTP chunk straight
        to the connection, from the watch cache's wake-up; False when it has
        to wait for the client (a full buffer) or cannot be written. Writing
        past aiohttp is safe here: a StreamResponse sends its headers at
        prepare(), and the watch's own writes never overlap a push (pushes
        happen only while its task waits for events)."""
        if transport.is_closing() or transport.get_write_buffer_size() > _PUSH_BUFFER:
            return False
        data = self._joined(batch)
        if data:
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True

    def _line(self, ev: CacheEvent, label_sel: Any, field_sel: Any) -> bytes | None:
        type_ = ev.type
        if label_sel is not None or field_sel is not None:
            cur = _matches(self.info, ev.obj, label_sel, field_sel)
            was = ev.prev is not None and _matches(self.info, ev.prev, label_sel, field_sel)
            if type_ == "MODIFIED":
                if cur and not was:
                    type_ = "ADDED"
                elif was and not cur:
                    type_ = "DELETED"
                elif not cur:
                    return None
            elif not cur:
                return None
        if self.plain and self.fmt.kind != "protobuf":
            # The stored bytes with the revision spliced in, framed: one copy,
            # made when sent rather than kept with the event.
            return codec.watch_line(type_, ev.raw, ev.rev)
        table_headers = self.fmt.kind == "table" and not self.headers_sent
        key = (type_, self.fmt.kind, self.info.group, self.info.version, self.include,
               table_headers)
        line = ev.encoded(key)
        if line is None:
            if self.plain:
                payload = codec.with_revision(ev.raw, ev.rev)
            else:
                payload = self._encode_obj(self.registry.to_served(self.info, ev.obj))
            line = self._frame(type_, payload)
            ev.remember(key, line)
        elif table_headers:
            self.headers_sent = True
        return line

    def _frame(self, type_: str, payload: bytes) -> bytes:
        if self.fmt.kind == "protobuf":
            # payload is the object's JSON: re-encoded as a length-prefixed frame.
            return encode_protobuf_event(type_, orjson.loads(payload))
        return b'{"type":"%s","object":%s}\n' % (type_.encode(), payload)

    async def bookmark(self, rev: int, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.info.kind, "apiVersion": self.info.group_version, "metadata": meta}
        await self._send("BOOKMARK", codec.dumps(obj))

    async def error(self, err: APIError) -> None:
        await self._send("ERROR", codec.dumps(err.status()))


# -- helpers ---------------------------------------------------------------

EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."
MAX_DISRUPTED_PODS = 2000  # evictions the disruption controller has yet to confirm


def _too_many_requests(pdb_name: str) -> APIError:
    return APIError(429, "TooManyRequests", EVICTION_REFUSED, {
        "causes": [{"reason": "DisruptionBudget",
                    "message": f"The disruption budget {pdb_name} is still being processed by "
                               f"the server."}],
        "retryAfterSeconds": 10}, headers={"Retry-After": "10"})


def _pdb_forbidden(pdb_name: str, why: str, cause: str) -> APIError:
    err = status.forbidden(f'poddisruptionbudget.policy "{pdb_name}" is forbidden: {why}',
                           "poddisruptionbudget", "policy", pdb_name)
    assert err.details is not None
    err.details["causes"] = [{"reason": "DisruptionBudget",
                              "message": f"The disruption budget {pdb_name} does not allow "
                                         f"evicting pods currently: {cause}"}]
    return err


def _refusal_cause(pdb_name: str, st: dict[str, Any]) -> str:
    """Why a budget with no disruption left refuses, in upstream's words."""
    cond = next((c for c in st.get("conditions") or [] if c.get("type") == "DisruptionAllowed"),
                None)
    said = cond is not None and cond.get("status") == "False" and bool(cond.get("message"))
    if said and cond is not None and cond.get("reason") == "SyncFailed":
        # Healthy counts are not to be trusted when the controller could not compute them.
        return (f"The disruption budget {pdb_name} does not allow evicting pods currently "
                f"because it failed sync: {cond['message']}")
    current, desired = int(st.get("currentHealthy") or 0), int(st.get("desiredHealthy") or 0)
    if current <= desired:
        return (f"The disruption budget {pdb_name} needs {desired} healthy pods and has "
                f"{current} currently")
    if said and cond is not None:
        return (f"The disruption budget {pdb_name} does not allow evicting pods currently "
                f"({cond.get('reason')}): {cond['message']}")
    return f"The disruption budget {pdb_name} does not allow evicting pods currently"


def _selects(pdb: dict[str, Any], labels: dict[str, str]) -> bool:
    """policy/v1: no selector selects nothing, an empty one every pod."""
    sel = (pdb.get("spec") or {}).get("selector")
    if sel is None:
        return False
    try:
        return bool(selectors.label_selector_from_dict(sel, plain_map=False).matches(labels))
    except selectors.SelectorError:
        return False  # a selector that cannot be read matches nothing


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_pod_condition(st: dict[str, Any], cond: dict[str, Any]) -> None:
    """upstream's UpdatePodCondition: replaced in place, its transition time
    kept while its status stays."""
    conds = st.setdefault("conditions", [])
    new = {"type": cond["type"], "status": cond["status"], "lastProbeTime": None,
           "lastTransitionTime": _now(), "reason": cond["reason"], "message": cond["message"]}
    for i, c in enumerate(conds):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"]:
                new["lastTransitionTime"] = c.get("lastTransitionTime")
            conds[i] = new
            return
    conds.append(new)


def _set_condition(st: dict[str, Any], type_: str, status_: str, reason: str, message: str,
                   observed_generation: Any) -> None:
    """apimachinery's SetStatusCondition (a metav1.Condition)."""
    conds = st.setdefault("conditions", [])
    new = {"type": type_, "status": status_, "observedGeneration": observed_generation,
           "lastTransitionTime": _now(), "reason": reason, "message": message}
    if not observed_generation:
        del new["observedGeneration"]
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            if c.get("status") == status_:
                new["lastTransitionTime"] = c.get("lastTransitionTime")
            conds[i] = new
            return
    conds.append(new)


_STREAM_ITEMS = 2000  # larger LISTs are streamed in pieces instead of joined whole
_PUSH_BUFFER = 256 * 1024  # a watcher with this much unsent waits for its client


async def _stream_list(request: web.Request, head: bytes, items: list[bytes]
                       ) -> web.StreamResponse:
    """Send a big JSON list piece by piece: no 40 MB join, and TLS encryption
    of the first pieces overlaps with preparing the rest."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    step = 1000

    def pieces() -> Iterator[bytes]:  # made one at a time: no whole copy
        yield head + b",".join(items[:step])
        for i in range(step, len(items), step):
            yield b"," + b",".join(items[i:i + step])
        yield b"]}"

    if codec.accepts_gzip(request.headers.get("Accept-Encoding", "")):
        # Always past the gzip threshold: compressed piece by piece, each in
        # a worker thread (zlib lets go of the GIL).
        resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
        await resp.prepare(request)
        gz = codec.gzip_compressor()
        loop = asyncio.get_running_loop()
        for piece in pieces():
            out = await loop.run_in_executor(None, gz.compress, piece)
            if out:
                await resp.write(out)
        await resp.write(gz.flush())
    else:
        await resp.prepare(request)
        for piece in pieces():
            await resp.write(piece)
    await resp.write_eof()
    return resp


def encode_protobuf(obj: dict[str, Any]) -> bytes:
    from pinnace.api import protobuf

    try:
        return protobuf.encode(obj)
    except (protobuf.ProtobufUnavailable, protobuf.ProtobufError) as e:
        raise status.not_acceptable(f"cannot encode as protobuf: {e}") from None


def encode_protobuf_list(api_version: str, kind: str, meta: dict[str, Any],
                         items: list[dict[str, Any]]) -> bytes:
    from pinnace.api import protobuf

    try:
        return protobuf.encode_list(api_version, kind, meta, items)
    except (protobuf.ProtobufUnavailable, protobuf.ProtobufError) as e:
        raise status.not_acceptable(f"cannot encode as protobuf: {e}") from None


def encode_protobuf_event(type_: str, obj: dict[str, Any]) -> bytes:
    from pinnace.api import protobuf

    return protobuf.encode_watch_event(type_, obj)


def make_table(info: ResourceInfo, objs: list[dict[str, Any]], now: dt.datetime,
               include_object: str, list_meta: dict[str, Any], headers: bool = True
               ) -> dict[str, Any]:
    """A Table for built-in kinds (server-side printers) or custom resources
    (their CRD's additionalPrinterColumns)."""
    try:
        if info.crd is None:
            return tables.table(info.group, info.resource, objs, now, include_object, list_meta,
                                headers=headers)
        cols = crdschema.printer_columns(info.crd, info.version)
        base = tables.table("", "", [], now, include_object, list_meta, headers=False)
    except ValueError as e:
        raise status.bad_request(str(e)) from None
    base["columnDefinitions"] = crdschema.column_definitions(cols) if headers else None
    for obj in objs:
        row: dict[str, Any] = {"cells": crdschema.row(cols, obj, now)}
        if include_object in ("", "Metadata"):
            row["object"] = tables.partial_object_metadata(obj)
        elif include_object == "Object":
            row["object"] = obj
        else:
            row["object"] = None
        base["rows"].append(row)
    return base


async def _read_body(request: web.Request) -> bytes:
    """The whole request body (413 past MAX_BODY). content.read(n) gives
    what has arrived so far, not the whole body: a body that comes in
    several packets (common under load) is read to its end."""
    chunks: list[bytes] = []
    size = 0
    while size <= codec.MAX_BODY:
        chunk = await request.content.read(codec.MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > codec.MAX_BODY:
        raise status.too_large()
    data = b"".join(chunks)
    request[AUDIT_BODY] = data  # what the audit log shows as requestObject
    return data


def _component(name: str, error: str | None) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": "Healthy", "status": "False" if error else "True"}
    if error:
        cond["error"] = error
    else:
        cond["message"] = "ok"
    return {"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name},
            "conditions": [cond]}


DEPRECATED: web.RequestKey[str] = web.RequestKey("deprecated", str)
ENDPOINTS_DEPRECATION = "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"


async def add_deprecation_warning(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the Warning a deprecated API carries, on every
    response about it (watch streams too, whose headers go out first)."""
    text = request.get(DEPRECATED)
    if text:
        have = response.headers.get("Warning")
        response.headers["Warning"] = (have + ", " if have else "") + warning_header(text)


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def warning_header(text: str) -> str:
    """A Warning header as kube-apiserver writes it: the text quoted as Go's
    strconv.Quote does, so a control character in it (an unknown field
    whose name is a NUL byte) never breaks the header."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'299 - "{text}"'
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '299 - "' + "".join(out) + '"'


def _rv(rv: str) -> int:
    try:
        n = int(rv)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise status.bad_request(f'invalid resource version "{rv}"') from None


def _selectors(info: ResourceInfo, q: Any) -> tuple[Any, Any]:
    label_sel = field_sel = None
    try:
        if q.get("labelSelector"):
            label_sel = selectors.parse_label_selector(q["labelSelector"])
        if q.get("fieldSelector"):
            field_sel = selectors.parse_field_selector(q["fieldSelector"])
    except ValueError as e:
        raise status.bad_request(str(e)) from None
    if field_sel is not None and info.crd is not None:
        try:
            selectors.check_custom_selector(field_sel, selectors.custom_fields(
                info.namespaced, crdschema.selectable_fields(info.crd, info.version)))
        except ValueError as e:
            raise status.bad_request(str(e)) from None
        return label_sel, field_sel
    if field_sel is not None:
        for f in field_sel.fields():
            if selectors.unsupported_field(info.group, info.resource, f):
                raise status.bad_request(selectors.field_error_message(info.group,
                                                                       info.resource, f))
        try:
            field_sel = selectors.convert_field_selector(info.group, info.resource, field_sel)
        except ValueError as e:
            raise status.bad_request(str(e)) from None
    return label_sel, field_sel


def _matches(info: ResourceInfo, obj: dict[str, Any], label_sel: Any, field_sel: Any) -> bool:
    if label_sel is not None and not label_sel.matches(obj["metadata"].get("labels") or {}):
        return False
    if field_sel is not None and not field_sel.matches(
            selectors.field_set(info.group, info.resource, obj) if info.crd is None else
            selectors.custom_field_set(obj, info.namespaced,
                                       crdschema.selectable_fields(info.crd, info.version))):
        return False
    return True


def _scale_paths(info: ResourceInfo) -> tuple[str, str, str]:
    """(spec replicas, status replicas, label selector) paths for the scale subresource."""
    if info.crd is not None:
        for v in info.crd.get("spec", {}).get("versions", []):
            if v.get("name") == info.version:
                sc = (v.get("subresources") or {}).get("scale") or {}
                return (sc.get("specReplicasPath", ".spec.replicas"),
                        sc.get("statusReplicasPath", ".status.replicas"),
                        sc.get("labelSelectorPath", ""))
    return ".spec.replicas", ".status.replicas", ""


def _get_path(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def _to_scale(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    spec_path, status_path, sel_path = _scale_paths(info)
    meta = obj["metadata"]
    st: dict[str, Any] = {"replicas": _get_path(obj, status_path) or 0}
    if sel_path:
        sel = _get_path(obj, sel_path)
        if sel:
            st["selector"] = sel
    else:
        sel = (obj.get("spec") or {}).get("selector")
        if isinstance(sel, dict) and ("matchLabels" in sel or "matchExpressions" in sel):
            st["selector"] = str(selectors.label_selector_from_dict(sel))
        elif isinstance(sel, dict) and sel:
            st["selector"] = ",".join(f"{k}={v}" for k, v in sorted(sel.items()))
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                       "creationTimestamp") if k in meta}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
            "spec": {"replicas": _get_path(obj, spec_path) or 0}, "status": st}


