"""OpenAPI documents: their shape, and real kubectl reading them (explain,
field-validation support) from a tiny loopback server."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from pinnace.api.resources import BUILTIN, ResourceInfo
from pinnace.apiserver import openapi, openapi_pb
from tests.conftest import KUBECTL

CRONTAB = ResourceInfo("stable.example.com", "v1", "crontabs", "CronTab", True,
                       short_names=("ct",), subresources=("status",))
CRONTAB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CronTab runs a command on a schedule.",
    "properties": {
        "spec": {
            "type": "object",
            "description": "What the crontab does.",
            "properties": {
                "cronSpec": {"type": "string", "description": "The cron expression to run on."},
                "replicas": {"type": "integer", "description": "How many to run at once."},
            },
        },
    },
}
CRD_SCHEMAS = {("stable.example.com", "v1", "CronTab"): CRONTAB_SCHEMA}
RESOURCES = BUILTIN + [CRONTAB]
POSTS = web.AppKey("posts", list[str])


def _doc(group: str, version: str) -> dict[str, Any]:
    raw = openapi.openapi_v3_group_version(group, version, RESOURCES, CRD_SCHEMAS)
    assert raw is not None
    return orjson.loads(raw)  # type: ignore[no-any-return]


def _walk_refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.add(v)
            else:
                _walk_refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _walk_refs(v, out)


def test_v2_definitions_are_swagger_shaped() -> None:
    doc = orjson.loads(openapi.openapi_v2(RESOURCES, CRD_SCHEMAS))
    assert doc["swagger"] == "2.0"
    defs = doc["definitions"]
    pod = defs["io.k8s.api.core.v1.Pod"]
    assert pod["type"] == "object"
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod",
                                                       "version": "v1"}]
    assert pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec"
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    # Only what served kinds reach: no alpha-only kinds.
    assert "io.k8s.api.resource.v1alpha3.DeviceTaintRule" not in defs
    assert "com.example.stable.v1.CronTab" in defs
    # Every reference resolves within the document.
    refs: set[str] = set()
    _walk_refs(doc, refs)
    assert {r.removeprefix("#/definitions/") for r in refs} <= set(defs)


def test_v2_paths_carry_standard_parameters() -> None:
    doc = orjson.loads(openapi.openapi_v2(RESOURCES, CRD_SCHEMAS))
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert {"get", "put", "patch", "delete"} <= set(item)
    patch_params = {p["name"] for p in item["patch"]["parameters"]}
    assert {"body", "dryRun", "fieldManager", "fieldValidation", "force"} <= patch_params
    coll = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert {p["name"] for p in coll["post"]["parameters"]} >= {"dryRun", "fieldValidation"}
    assert {p["name"] for p in coll["get"]["parameters"]} >= {"labelSelector", "watch", "limit"}
    assert coll["get"]["x-kubernetes-action"] == "list"
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale" in doc["paths"]
    assert "/api/v1/nodes/{name}" in doc["paths"]
    assert "/api/v1/namespaces/{namespace}/nodes" not in doc["paths"]


def test_v3_index_lists_every_group_version_with_hash() -> None:
    index = orjson.loads(openapi.openapi_v3_index(RESOURCES, CRD_SCHEMAS))["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/stable.example.com/v1"} <= set(index)
    url = index["apis/apps/v1"]["serverRelativeURL"]
    raw = openapi.openapi_v3_group_version("apps", "v1", RESOURCES, CRD_SCHEMAS)
    assert raw is not None
    assert url == f"/openapi/v3/apis/apps/v1?hash={openapi.doc_hash(raw)}"


def test_v3_hash_follows_crd_schema_changes() -> None:
    before = orjson.loads(openapi.openapi_v3_index(RESOURCES, CRD_SCHEMAS))["paths"]
    changed = {k: {**v, "description": "changed"} for k, v in CRD_SCHEMAS.items()}
    after = orjson.loads(openapi.openapi_v3_index(RESOURCES, changed))["paths"]
    key = "apis/stable.example.com/v1"
    assert before[key] != after[key]
    assert before["api/v1"] == after["api/v1"]


def test_v3_patch_operations_advertise_field_validation() -> None:
    doc = _doc("apps", "v1")
    assert doc["openapi"].startswith("3.0")
    found = 0
    for item in doc["paths"].values():
        op = item.get("patch")
        if not op:
            continue
        assert op["x-kubernetes-action"] == "patch"
        assert set(op["x-kubernetes-group-version-kind"]) == {"group", "version", "kind"}
        names = {(p["name"], p["in"]) for p in op["parameters"]}
        assert ("fieldValidation", "query") in names
        found += 1
    assert found >= 5


def test_v3_schemas_use_component_refs() -> None:
    doc = _doc("", "v1")
    schemas = doc["components"]["schemas"]
    spec = schemas["io.k8s.api.core.v1.Pod"]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]
    assert "Deployment" not in str(schemas.keys())
    refs: set[str] = set()
    _walk_refs(doc, refs)
    assert {r.removeprefix("#/components/schemas/") for r in refs} <= set(schemas)
    assert openapi.openapi_v3_group_version("nope.example.com", "v1", RESOURCES, {}) is None


def test_v3_crd_document_has_kind_and_list() -> None:
    doc = _doc("stable.example.com", "v1")
    schemas = doc["components"]["schemas"]
    ct = schemas["com.example.stable.v1.CronTab"]
    assert ct["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "version": "v1", "kind": "CronTab"}]
    assert "metadata" in ct["properties"] and "apiVersion" in ct["properties"]
    assert "com.example.stable.v1.CronTabList" in schemas
    status = "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"
    assert status in doc["paths"]


def test_documents_are_cached() -> None:
    a = openapi.openapi_v2(RESOURCES, CRD_SCHEMAS)
    b = openapi.openapi_v2(RESOURCES, CRD_SCHEMAS)
    assert a is b


# ------------------------------------------------- /openapi/v2 as protobuf

def _document_class() -> Any:
    """openapi.v2.Document as the protobuf package builds it from the
    descriptor kubectl carries: a decoder that shares nothing with ours."""
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(openapi_pb._load_raw()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("openapi.v2.Document"))


def _camel(name: str) -> str:
    if name == "_ref":
        return "$ref"
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _to_json(m: Message) -> Any:
    """gnostic message -> Swagger JSON, following gnostic's ToRawInfo."""
    name = m.DESCRIPTOR.name
    if name == "Any":
        return yaml.safe_load(m.yaml)  # type: ignore[attr-defined]
    if name == "TypeItem":
        values = list(m.value)  # type: ignore[attr-defined]
        return values[0] if len(values) == 1 else values
    if name == "ItemsItem":
        items = [_to_json(s) for s in m.schema]  # type: ignore[attr-defined]
        return items[0] if len(items) == 1 else items
    if name == "StringArray":
        return list(m.value)  # type: ignore[attr-defined]
    if m.DESCRIPTOR.oneofs:
        chosen = m.WhichOneof(m.DESCRIPTOR.oneofs[0].name)
        assert chosen is not None, name
        value = getattr(m, chosen)
        return value if isinstance(value, bool) else _to_json(value)
    out: dict[str, Any] = {}
    for field, value in m.ListFields():
        if field.is_repeated and field.message_type is not None and \
                field.message_type.name.startswith("Named"):  # maps, x-* keys
            for pair in value:
                out[pair.name] = _to_json(pair.value)
        elif field.message_type is None:
            out[_camel(field.name)] = list(value) if field.is_repeated else value
        elif field.is_repeated:
            out[_camel(field.name)] = [_to_json(v) for v in value]
        else:
            out[_camel(field.name)] = _to_json(value)
    return out


def _proto3_view(doc: Any) -> Any:
    """``doc`` without what proto3 cannot carry: the only zero value the
    documents hold outside an Any is ``required: false`` of body parameters."""
    if isinstance(doc, dict):
        if doc.get("in") == "body" and doc.get("required") is False:
            doc = {k: v for k, v in doc.items() if k != "required"}
        return {k: _proto3_view(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_proto3_view(v) for v in doc]
    return doc


WIDGET = ResourceInfo("ex.com", "v1", "widgets", "Widget", True)
WIDGET_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"spec": {
    "type": "object", "required": ["size"],
    "x-kubernetes-validations": [{"rule": "self.size > 1 && self.mode != ''",
                                  "message": "size: must be > 1 # really"}],
    "properties": {
        "size": {"type": "integer", "minimum": 2, "maximum": 10.5, "default": 3},
        "mode": {"type": "string", "enum": ["on", "off", ""], "default": "on",
                 "pattern": "^[a-z]+$", "maxLength": 20},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "raw": {"x-kubernetes-preserve-unknown-fields": True},
        "list": {"type": "array", "items": {"type": "object", "properties": {
            "k": {"type": "string"}}}, "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["k"], "maxItems": 5},
        "obj": {"type": "object", "default": {"a": [1, {"b": None}]}, "example": {"x": 1.5}},
    }}}}


def test_v2_protobuf_decodes_to_the_json_document() -> None:
    cls = _document_class()
    widget = {("ex.com", "v1", "Widget"): WIDGET_SCHEMA}
    for resources, crds in ((RESOURCES, CRD_SCHEMAS), (BUILTIN + [WIDGET], widget),
                            (BUILTIN, {})):
        raw = openapi.openapi_v2(resources, crds)
        encoded = openapi_pb.encode(orjson.loads(raw))
        decoded = cls.FromString(encoded)
        assert _to_json(decoded) == _proto3_view(orjson.loads(raw))
        # Field order is canonical, as Go's proto.Marshal writes it.
        assert decoded.SerializeToString() == encoded
    pod = {p.name: p.value for p in decoded.definitions.additional_properties}[
        "io.k8s.api.core.v1.Pod"]
    ext = {e.name: e.value.yaml for e in pod.vendor_extension}
    assert ext["x-kubernetes-group-version-kind"] == '- group: ""\n  kind: Pod\n  version: v1\n'


def _two_byte_varint(n: int) -> bytes:
    assert n < 1 << 14
    return bytes([n]) if n < 0x80 else bytes([n & 0x7F | 0x80, n >> 7])


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag (number << 3 | 2), length, payload."""
    return _two_byte_varint(number << 3 | 2) + _two_byte_varint(len(payload)) + payload


def test_v2_protobuf_wire_bytes_of_a_small_document() -> None:
    # Field numbers as OpenAPIv2.proto gives them, worked by hand.
    doc = {
        "swagger": "2.0",
        "info": {"title": "T", "version": "v1"},
        "paths": {"/a": {"get": {
            "operationId": "g",
            "parameters": [{"name": "n", "in": "query", "type": "string"}],
            "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/X"}}},
            "x-kubernetes-action": "get"}}},
        "definitions": {"X": {
            "type": "object", "required": ["a"],
            "properties": {"a": {"type": "array", "items": {"type": "string"}},
                           "m": {"type": "object", "additionalProperties": False}},
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "X", "version": "v1"}]}},
        "security": [{"BearerToken": []}],
    }
    op = (_ld(5, b"g")                                       # operation_id
          + _ld(8, _ld(1, _ld(2, _ld(3,                      # parameters.parameter.non_body.query
                _ld(2, b"query") + _ld(4, b"n") + _ld(6, b"string")))))
          + _ld(9, _ld(1, _ld(1, b"200") + _ld(2, _ld(1,     # responses.response_code.value.response
                _ld(1, b"OK") + _ld(2, _ld(1, _ld(1, b"#/definitions/X")))))))
          + _ld(13, _ld(1, b"x-kubernetes-action") + _ld(2, _ld(2, b"get\n"))))
    string_type = _ld(22, _ld(1, b"string"))
    props = (_ld(1, _ld(1, b"a") + _ld(2, _ld(22, _ld(1, b"array"))
                                       + _ld(23, _ld(1, string_type))))
             + _ld(1, _ld(1, b"m") + _ld(2, _ld(21, b"\x10\x00")  # additionalProperties: false
                                       + _ld(22, _ld(1, b"object")))))
    schema_x = (_ld(19, b"a") + _ld(22, _ld(1, b"object")) + _ld(25, props)
                + _ld(31, _ld(1, b"x-kubernetes-group-version-kind")
                      + _ld(2, _ld(2, b'- group: ""\n  kind: X\n  version: v1\n'))))
    want = (_ld(1, b"2.0")
            + _ld(2, _ld(1, b"T") + _ld(2, b"v1"))
            + _ld(8, _ld(2, _ld(1, b"/a") + _ld(2, _ld(2, op))))
            + _ld(9, _ld(1, _ld(1, b"X") + _ld(2, schema_x)))
            + _ld(12, _ld(1, _ld(1, b"BearerToken") + _ld(2, b""))))
    assert openapi_pb.encode(doc) == want


@pytest.mark.parametrize("value", [
    "", "true", "Yes", "y", "null", "~", "1", "1.5", "0x10", "1e3", ".inf", "2001-12-14",
    "-x", "- x", "a: b", "a:b", "#x", "x #y", "{x}", "[a]", "*a", "&a", "!t", "<<", "=",
    "'q'", '"dq"', "a ", " a", "two\nlines", "tab\tx", "ü", "\u2028", "\x85",
    "merge,retainKeys", "/a/b", None, True, 0, -1, 1.5, 1e16, [], {},
    [{"group": "", "kind": "Pod", "version": "v1"}],
    {"discriminator": "type", "fields-to-discriminateBy": {"exec": "Exec", "": "e"}},
    [1, [2, [3]], {"a": [{"b": {}}]}],
])
def test_any_yaml_reads_back_as_the_value(value: Any) -> None:
    back = yaml.safe_load(openapi_pb.to_yaml(value))
    assert back == value and type(back) is type(value)


def test_descriptor_is_cut_where_field_numbers_go_down() -> None:
    raw = openapi_pb._load_raw()
    blob = b"junk" + raw + b"\n\x19openapiv3/OpenAPIv3.proto" + b"\x00" * 8
    assert openapi_pb._cut_descriptor(blob, 4) == raw
    assert openapi_pb._cut_descriptor(b"x" + raw + b"\x00\x00", 1) == raw


@pytest.mark.parametrize("accept, want", [
    ("", openapi.V2_JSON),
    ("*/*", openapi.V2_JSON),
    ("application/*", openapi.V2_JSON),
    ("application/json, */*", openapi.V2_JSON),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", openapi.V2_PROTOBUF),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", openapi.V2_PROTOBUF),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf;q=0.5, application/json",
     openapi.V2_JSON),
    ("application/json;q=0.9, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
     openapi.V2_PROTOBUF),
    ("text/html, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
     openapi.V2_PROTOBUF),
    ("text/html", None),
    ("application/yaml", None),
])
def test_v2_content_negotiation(accept: str, want: str | None) -> None:
    assert openapi.v2_media_type(accept) == want


PB_ACCEPT = {"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}


def test_serve_v2_etag_and_conditional_requests() -> None:
    doc = openapi.openapi_v2(RESOURCES, CRD_SCHEMAS)
    code, headers, body = openapi.serve_v2(doc, PB_ACCEPT)
    assert code == 200
    assert headers["Content-Type"] == openapi.V2_PROTOBUF
    assert headers["Vary"] == "Accept"
    # Upstream's ETag: the SHA-512 of the JSON, in upper-case hex, for both forms.
    etag = '"' + hashlib.sha512(doc).hexdigest().upper() + '"'
    assert headers["ETag"] == etag
    assert body[:1] == b"\x0a" and body != doc
    again = openapi.serve_v2(doc, PB_ACCEPT)[2]
    assert again is body  # encoded once per document

    code, js_headers, js_body = openapi.serve_v2(doc, {})
    assert (code, js_headers["Content-Type"], js_headers["ETag"]) == (200, "application/json", etag)
    assert js_body is doc

    for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        code, h304, b304 = openapi.serve_v2(doc, {**PB_ACCEPT, "If-None-Match": inm})
        assert (code, b304) == (304, b""), inm
        assert h304["ETag"] == etag and "Content-Type" not in h304
    assert openapi.serve_v2(doc, {**PB_ACCEPT, "If-None-Match": '"other"'})[0] == 200

    modified = email.utils.parsedate_to_datetime(headers["Last-Modified"]).timestamp()
    later = email.utils.formatdate(modified + 60, usegmt=True)
    earlier = email.utils.formatdate(modified - 60, usegmt=True)
    assert openapi.serve_v2(doc, {**PB_ACCEPT, "If-Modified-Since": later})[0] == 304
    assert openapi.serve_v2(doc, {**PB_ACCEPT, "If-Modified-Since": earlier})[0] == 200
    # If-None-Match wins over If-Modified-Since.
    assert openapi.serve_v2(doc, {**PB_ACCEPT, "If-Modified-Since": later,
                                  "If-None-Match": '"other"'})[0] == 200

    code, h406, b406 = openapi.serve_v2(doc, {"Accept": "text/html"})
    assert (code, h406, b406) == (406, {"Vary": "Accept"}, b"")


# ------------------------------------------------------------ real kubectl

def _api_resource(r: ResourceInfo) -> dict[str, Any]:
    return {"name": r.resource, "singularName": r.singular_name, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": list(r.verbs), "shortNames": list(r.short_names)}


def _test_app() -> web.Application:
    """Just enough of an API server for kubectl explain: discovery for the
    served resources and the three OpenAPI endpoints."""
    served = [r for r in RESOURCES if (r.group, r.version) in
              {("", "v1"), ("apps", "v1"), ("stable.example.com", "v1")}]
    app = web.Application()

    def js(obj: Any) -> web.Response:
        return web.Response(body=orjson.dumps(obj), content_type="application/json")

    async def api(_: web.Request) -> web.Response:
        return js({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})

    async def apis(_: web.Request) -> web.Response:
        groups = []
        for g in ("apps", "stable.example.com"):
            gv = {"groupVersion": f"{g}/v1", "version": "v1"}
            groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
        return js({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    def resource_list(group: str) -> Any:
        async def handler(_: web.Request) -> web.Response:
            gv = f"{group}/v1" if group else "v1"
            return js({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                       "resources": [_api_resource(r) for r in served if r.group == group]})
        return handler

    async def v2(_: web.Request) -> web.Response:
        return web.Response(body=openapi.openapi_v2(served, CRD_SCHEMAS),
                            content_type="application/json")

    async def v3(_: web.Request) -> web.Response:
        return web.Response(body=openapi.openapi_v3_index(served, CRD_SCHEMAS),
                            content_type="application/json")

    async def v3_gv(request: web.Request) -> web.Response:
        parts = request.match_info["gv"].split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        body = openapi.openapi_v3_group_version(group, version, served, CRD_SCHEMAS)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/json")

    async def create(request: web.Request) -> web.Response:
        app[POSTS].append(request.path_qs)
        return web.Response(status=201, body=await request.read(),
                            content_type="application/json")

    app[POSTS] = []
    app.router.add_post("/api/v1/namespaces/{ns}/pods", create)
    app.router.add_post("/apis/stable.example.com/v1/namespaces/{ns}/crontabs", create)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", resource_list(""))
    app.router.add_get("/apis/apps/v1", resource_list("apps"))
    app.router.add_get("/apis/stable.example.com/v1", resource_list("stable.example.com"))
    app.router.add_get("/openapi/v2", v2)
    app.router.add_get("/openapi/v3", v3)
    app.router.add_get("/openapi/v3/{gv:.+}", v3_gv)
    return app


@pytest.fixture
def app() -> web.Application:
    return _test_app()


@pytest.fixture
async def server_url(app: web.Application) -> Any:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _kubectl(url: str, tmp: Path, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(tmp / "none"), "HOME": str(tmp)}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--server", url, "--cache-dir", str(tmp / "cache"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_kubectl_explain_builtin_fields(server_url: str, tmp_path: Path) -> None:
    out = await _kubectl(server_url, tmp_path, "explain", "pod.spec.containers")
    assert "KIND:       Pod" in out
    assert "FIELD: containers <[]Container>" in out
    assert "A single application container that you want to run within a pod." in out
    assert "imagePullPolicy\t<string>" in out

    out = await _kubectl(server_url, tmp_path, "explain", "deployment.spec.strategy")
    assert "GROUP:      apps" in out
    assert "The deployment strategy to use to replace existing pods with new ones." in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out


async def test_kubectl_explain_custom_resource(server_url: str, tmp_path: Path) -> None:
    out = await _kubectl(server_url, tmp_path, "explain", "crontab.spec")
    assert "What the crontab does." in out
    assert "cronSpec\t<string>" in out
    out = await _kubectl(server_url, tmp_path, "explain", "ct.metadata.labels")
    assert "Map of string keys and values" in out


async def test_kubectl_recursive_explain(server_url: str, tmp_path: Path) -> None:
    out = await _kubectl(server_url, tmp_path, "explain", "deployment.spec", "--recursive")
    assert "maxSurge\t<IntOrString>" in out
    assert "template\t<PodTemplateSpec> -required-" in out


MANIFESTS = """\
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default}
spec:
  containers: [{name: a, image: nginx}]
---
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: a, namespace: default}
spec: {cronSpec: "* * * * *"}
"""


async def test_kubectl_uses_server_side_field_validation(
        app: web.Application, server_url: str, tmp_path: Path) -> None:
    # kubectl only sends fieldValidation when the v3 document says the
    # kind's PATCH supports it; otherwise it validates on the client.
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    out = await _kubectl(server_url, tmp_path, "create", "-f", str(tmp_path / "m.yaml"),
                         "--validate=strict")
    assert "pod/a created" in out
    assert app[POSTS] == [
        "/api/v1/namespaces/default/pods?fieldManager=kubectl-create&fieldValidation=Strict",
        "/apis/stable.example.com/v1/namespaces/default/crontabs"
        "?fieldManager=kubectl-create&fieldValidation=Strict",
    ]
