"""Hostile and malformed input (issue 12): a clear 4xx Status, nothing stored,
no 500, memory not blown up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Server, start_server

BOMB = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands(server: Server, namespace: str) -> None:
    http = server.http()
    code, body = http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps", BOMB,
                           ctype="application/yaml")
    assert code == 400, body
    assert body["kind"] == "Status" and "excessive aliasing" in body["message"]
    assert http.call("GET", f"/api/v1/namespaces/{namespace}/configmaps/lol")[0] == 404
    # One big anchor repeated: few aliases, but far more than a body may be.
    big = (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: wide}\n"
           b"x: &x " + b"a" * 200_000 + b"\ndata: {k: v}\nextra: [" +
           b",".join([b"*x"] * 40) + b"]\n")
    code, body = http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps", big,
                           ctype="application/yaml")
    assert code == 413 and body["reason"] == "RequestEntityTooLarge", body
    # Anchors as people use them still work.
    ok = (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: anchors, labels: &l {app: web}}\n"
          b"data: {a: x}\n")
    assert http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps", ok,
                     ctype="application/yaml")[0] == 201


@pytest.fixture(scope="module")
def small_objects(tmp_path_factory: pytest.TempPathFactory) -> Server:
    srv = start_server(tmp_path_factory.mktemp("small"), "--datastore", "memory",
                       "--max-object-size", "20000")
    yield srv  # type: ignore[misc]
    srv.stop()


def test_an_object_larger_than_may_be_stored_gets_413_and_nothing_changes(
        small_objects: Server, tmp_path: Path) -> None:
    srv = small_objects
    srv.kubectl("create", "configmap", "fits", "--from-literal=k=" + "v" * 5000)
    manifest = tmp_path / "big.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "big"}, "data": {"k": "v" * 30000}}))
    out = srv.kubectl("create", "-f", str(manifest), check=False)
    assert out.returncode != 0
    assert "Request entity too large: the object is" in out.stderr
    assert "the limit is 20000" in out.stderr
    assert srv.kubectl("get", "configmap", "big", check=False).returncode != 0
    # An update that would grow past the limit is refused; the object keeps its data.
    http = srv.http()
    code, body = http.call("PATCH", "/api/v1/namespaces/default/configmaps/fits",
                           {"data": {"k": "w" * 30000}},
                           ctype="application/merge-patch+json")
    assert code == 413 and body["reason"] == "RequestEntityTooLarge", body
    code, body = http.call("GET", "/api/v1/namespaces/default/configmaps/fits")
    assert body["data"]["k"] == "v" * 5000


def _token(data: object) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


NESTED = "{\"data\":" + "{\"a\":" * 1000 + "1" + "}" * 1000 + "}"


@pytest.mark.parametrize("method, path, body, ctype, code, message", [
    ("GET", "configmaps?limit=99999999999999999999999", None, "", 400, "value out of range"),
    ("GET", "configmaps?limit=1&continue=" + _token({"start": "x", "rv": 10**30}), None, "",
     400, "continue key is not valid"),
    ("GET", "configmaps?limit=1&continue=" + _token({"start": 5, "rv": 1}), None, "", 400,
     "continue key is not valid"),
    ("GET", "configmaps?limit=1&continue=" + _token({"start": "/registry/secrets/x", "rv": 1}),
     None, "", 400, "continue key is not valid"),
    ("GET", "configmaps?limit=1&continue=%%%", None, "", 400, "continue key is not valid"),
    ("GET", "configmaps?watch=true&timeoutSeconds=abc", None, "", 400, 'parsing "abc"'),
    ("GET", "configmaps?watch=true&timeoutSeconds=nan", None, "", 400, 'parsing "nan"'),
    ("GET", "configmaps?watch=true&timeoutSeconds=inf", None, "", 400, 'parsing "inf"'),
    ("GET", "configmaps?watch=true&timeoutSeconds=1e23", None, "", 400, 'parsing "1e23"'),
    ("GET", "configmaps?resourceVersionMatch=Bogus&resourceVersion=1", None, "", 422,
     'resourceVersionMatch: Unsupported value: "Bogus"'),
    ("GET", "configmaps?resourceVersionMatch=NotOlderThan", None, "", 422,
     "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ("GET", "configmaps?resourceVersionMatch=Exact&resourceVersion=0", None, "", 422,
     'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("GET", "configmaps?sendInitialEvents=true", None, "", 422,
     "sendInitialEvents is forbidden for list"),
    ("GET", "configmaps?watch=true&resourceVersionMatch=NotOlderThan", None, "", 422,
     "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
    ("DELETE", "configmaps/target", b'{"preconditions": "garbage"}', "application/json", 400,
     "cannot unmarshal string into Go struct field DeleteOptions.preconditions"),
    ("DELETE", "configmaps/target", b'{"preconditions": {"uid": 5}}', "application/json", 400,
     "DeleteOptions.preconditions.uid of type string"),
    ("DELETE", "configmaps/target", b'{"gracePeriodSeconds": "soon"}', "application/json", 400,
     "DeleteOptions.gracePeriodSeconds of type int64"),
    ("PATCH", "configmaps/target", b'[{"op": "replace", "path": "/metadata", "value": 5}]',
     "application/json-patch+json", 400, "metadata must be an object"),
    ("PATCH", "configmaps/target", b'[{"op": "add", "path": "data/k9", "value": "x"}]',
     "application/json-patch+json", 422, 'doc is missing path: "data/k9"'),
    ("PATCH", "configmaps/target", b'[{"op": "copy", "from": "/data/missing", "path": "/data/k"}]',
     "application/json-patch+json", 422, "Unable to get nonexistent key: missing"),
    ("PATCH", "configmaps/target", b'{"metadata": {"$retainKeys": [null, {}]}}',
     "application/strategic-merge-patch+json", 422, "expected a string, but received a <nil>"),
    ("PATCH", "configmaps/target", NESTED.encode(), "application/merge-patch+json", 400,
     "nested too deeply"),
    ("PATCH", "configmaps/target", NESTED.encode(), "application/strategic-merge-patch+json", 400,
     "nested too deeply"),
    ("PATCH", "configmaps/target", b'[{"op": "add", "path": "/data/x", "value": ' +
     b"[" * 1000 + b"]" * 1000 + b"}]", "application/json-patch+json", 400, "nested too deeply"),
    ("POST", "configmaps", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nullkey}\n"
     b"data:\n  ~: x\n", "application/yaml", 400, "unsupported map key of type null"),
    ("PATCH", "configmaps/applied?fieldManager=me", b"metadata: {name: applied}\ndata: {a: b}\n",
     "application/apply-patch+yaml", 400,
     "Incorrect version specified in apply patch. Specified patch version: , expected: v1"),
    ("PATCH", "configmaps/applied?fieldManager=me",
     b"apiVersion: v1\nmetadata: {name: applied}\ndata: {a: b}\n",
     "application/apply-patch+yaml", 400, "Object 'Kind' is missing"),
])
def test_bad_input_gets_a_4xx_status_naming_it(server: Server, namespace: str, method: str,
                                               path: str, body: bytes | None, ctype: str,
                                               code: int, message: str) -> None:
    http = server.http()
    base = f"/api/v1/namespaces/{namespace}/"
    assert http.call("POST", base + "configmaps", {"metadata": {"name": "target"},
                                                   "data": {"a": "b"}})[0] == 201
    got, status = http.call(method, base + path, body, ctype=ctype or "application/json")
    assert (got, status["kind"]) == (code, "Status"), status
    assert message in status["message"], status["message"]
    # Nothing was changed or half-written.
    code_now, target = http.call("GET", base + "configmaps/target")
    assert code_now == 200 and target["data"] == {"a": "b"}
    assert http.call("GET", base + "configmaps/applied")[0] == 404


def test_a_limit_of_zero_or_less_means_no_limit(server: Server, namespace: str) -> None:
    http = server.http()
    for i in range(3):
        http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": f"c{i}"}})
    for limit in ("0", "-1"):
        code, body = http.call("GET", f"/api/v1/namespaces/{namespace}/configmaps?limit={limit}")
        assert code == 200 and len(body["items"]) >= 3 and not body["metadata"].get("continue")


def test_a_watch_from_a_future_revision_is_refused_within_seconds(server: Server,
                                                                  namespace: str) -> None:
    http = server.http()
    code, listed = http.call("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    future = int(listed["metadata"]["resourceVersion"]) + 1_000_000
    for query in (f"watch=true&resourceVersion={future}", f"resourceVersion={future}",
                  f"resourceVersion={future}&resourceVersionMatch=Exact"):
        code, body = http.call("GET", f"/api/v1/namespaces/{namespace}/configmaps?{query}")
        assert code == 504 and "Too large resource version" in body["message"], (query, body)


def test_yaml_keys_that_are_not_strings_become_strings_as_kubernetes_reads_them(
        server: Server, namespace: str) -> None:
    http = server.http()
    code, body = http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                           b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keys}\n"
                           b"data:\n  5: x\n  1.5: c\n  yes: c\n  day: 2024-01-01\n",
                           ctype="application/yaml")
    assert code == 201, body
    assert body["data"] == {"5": "x", "1.5": "c", "true": "c", "day": "2024-01-01"}


@pytest.mark.parametrize("mode", ["Strict", "Warn", "Ignore"])
def test_unknown_fields_of_built_in_kinds_are_never_stored(server: Server, namespace: str,
                                                           mode: str) -> None:
    http = server.http()
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    code, body = http.call("POST", f"{base}?fieldValidation={mode}",
                           {"metadata": {"name": "cm", "bogusMeta": 1}, "data": {"a": "b"},
                            "bogus": {"deep": True}})
    if mode == "Strict":
        assert code == 400 and 'unknown field "bogus"' in body["message"], body
        return
    assert code == 201, body
    code, stored = http.call("GET", f"{base}/cm")
    assert "bogus" not in stored and "bogusMeta" not in stored["metadata"]
    assert "bogus" not in json.dumps(stored["metadata"]["managedFields"])
    # Patches are decoded the same way: a stray field never lands, a null
    # string in a map becomes "" as Go's decoder makes it.
    code, patched = http.call("PATCH", f"{base}/cm?fieldValidation={mode}",
                              [{"op": "add", "path": "/junk", "value": 1},
                               {"op": "add", "path": "/data/k9", "value": None}],
                              ctype="application/json-patch+json")
    assert code == 200, patched
    assert "junk" not in patched and patched["data"] == {"a": "b", "k9": ""}
    out = server.kubectl("create", "configmap", "via-kubectl", "-n", namespace,
                         f"--validate={mode.lower()}", "--dry-run=server", "-o", "json")
    assert json.loads(out.stdout)["metadata"]["name"] == "via-kubectl"


def _handshake(server: Server, cipher: str) -> str | None:
    """The TLS 1.2 suite agreed when a client offers only ``cipher``, or None."""
    import socket
    import ssl
    from urllib.parse import urlparse

    url = urlparse(server.url)
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "ca.crt"))
    ctx.check_hostname = False
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    try:
        with socket.create_connection((url.hostname, url.port), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            return tls.cipher()[0]  # type: ignore[index]
    except ssl.SSLError:
        return None


def test_tls_offers_what_a_go_server_offers(server: Server) -> None:
    # The SHA-256/384 CBC suites OpenSSL would add: not offered by Go, nor by us.
    assert _handshake(server, "ECDHE-ECDSA-AES256-SHA384") is None
    assert _handshake(server, "ECDHE-ECDSA-AES128-SHA256") is None
    for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                  "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-SHA"):
        assert _handshake(server, suite) == suite


def test_headers_up_to_go_servers_limit_are_read(server: Server) -> None:
    import urllib.request

    http = server.http()
    req = urllib.request.Request(server.url + "/api/v1/namespaces/default",
                                 headers={"X-Long": "a" * 100_000})
    with urllib.request.urlopen(req, context=http.ctx, timeout=10) as resp:
        assert json.loads(resp.read())["metadata"]["name"] == "default"


def _raw(server: Server, request: bytes, tls: bool = True) -> bytes:
    """What the server answers to ``request`` sent as is, until it closes."""
    import socket
    import ssl
    from urllib.parse import urlparse

    url = urlparse(server.url)
    ctx = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "ca.crt"))
    ctx.check_hostname = False
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        conn = ctx.wrap_socket(raw) if tls else raw
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_plain_http_to_the_tls_port_is_told_so(server: Server) -> None:
    answer = _raw(server, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n", tls=False)
    assert answer == (b"HTTP/1.0 400 Bad Request\r\n\r\n"
                      b"Client sent an HTTP request to an HTTPS server.\n")
    # And the port still speaks TLS to the next client.
    assert b'"gitVersion"' in _raw(server, b"GET /version HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n")


def test_headers_past_go_servers_limit_get_431(server: Server) -> None:
    long = b"X-Long: " + b"a" * (2 << 20) + b"\r\n"
    answer = _raw(server, b"GET /version HTTP/1.1\r\nHost: x\r\n" + long + b"\r\n")
    assert answer.split(b" ", 2)[1] == b"431", answer[:200]


def test_a_method_the_server_does_not_know_gets_a_405_status(server: Server) -> None:
    answer = _raw(server, b"FOO /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"405", head
    status = json.loads(body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "MethodNotAllowed", 405)


def test_a_warning_about_a_field_named_with_control_characters_is_quoted(
        server: Server, namespace: str) -> None:
    """Found by the fuzz test: the Warning header for an unknown field named
    "\\x00" made the server drop the connection without an answer."""
    import urllib.request

    http = server.http()
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nul"},
                       "\x00": False, "data": {"a": "b"}}).encode()
    req = urllib.request.Request(
        f"{server.url}/api/v1/namespaces/{namespace}/configmaps?fieldValidation=Warn",
        data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=http.ctx, timeout=10) as resp:
        assert resp.status == 201
        assert resp.headers["Warning"] == '299 - "unknown field \\"\\x00\\""'


def test_fields_set_to_null_are_as_if_absent(server: Server, namespace: str) -> None:
    """Found by bench/fuzz.py: `"tolerations": null` in a pod made the pod
    admission fail with a 500. Decoding into the Go type leaves a null field
    unset; so does pinnace."""
    http = server.http()
    code, pod = http.call("POST", f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nulls", "labels": None, "creationTimestamp": None},
        "spec": {"tolerations": None, "initContainers": None, "overhead": None,
                 "containers": [{"name": "c", "image": "busybox", "env": None}]}})
    assert code == 201, pod
    assert {t["key"] for t in pod["spec"]["tolerations"]} >= {"node.kubernetes.io/not-ready"}
    assert "initContainers" not in pod["spec"] and "labels" not in pod["metadata"]
    assert "env" not in pod["spec"]["containers"][0]
    code, dep = http.call("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nulls"},
        "spec": {"selector": {"matchLabels": {"app": "n"}}, "strategy": None,
                 "template": {"metadata": {"labels": {"app": "n"}, "annotations": None},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert code == 201, dep
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
