"""Admission webhooks through kubectl: a webhook server run by the test on
loopback (TLS with its own CA in caBundle) denies, mutates and warns; a
webhook that cannot be reached fails closed or is ignored, as its
failurePolicy says. Every configuration is narrowed to the test's namespace."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Server, wait_for


class WebhookServer:
    """Answers AdmissionReviews: refuses ConfigMaps with a "forbidden" key,
    labels every ConfigMap it is asked to mutate, warns on "risky"."""

    def __init__(self, tmp: Path):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook-test")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=1))
                .not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (tmp / "tls.crt").write_bytes(pem)
        (tmp / "tls.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.ca_bundle = base64.b64encode(pem).decode()
        self.reviews: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.reviews.append(review)
                body = json.dumps({"apiVersion": "admission.k8s.io/v1",
                                   "kind": "AdmissionReview",
                                   "response": outer.answer(self.path, review["request"])})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, req: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"uid": req["uid"], "allowed": True}
        obj = req.get("object") or {}
        data = obj.get("data") or {}
        if path.startswith("/validate"):
            if "forbidden" in data:
                out = {"uid": req["uid"], "allowed": False, "status": {
                    "code": 403, "reason": "Forbidden",
                    "message": "the key \"forbidden\" is not allowed here"}}
            elif "risky" in data:
                out["warnings"] = ["the key \"risky\" is risky"]
        elif path.startswith("/mutate"):
            labels = (obj.get("metadata") or {}).get("labels")
            patch = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}] \
                if not labels else [{"op": "add", "path": "/metadata/labels/mutated",
                                     "value": "yes"}]
            out["patchType"] = "JSONPatch"
            out["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook_server(tmp_path: Path) -> Iterator[WebhookServer]:
    srv = WebhookServer(tmp_path)
    yield srv
    srv.close()


def _first_refusal(cluster: Server, ns: str, prefix: str, *args: str) -> str:
    """Create ConfigMaps named prefix-N until one is refused; its stderr. A
    configuration written a moment ago reaches the server's cache through
    its watch, so the first try may still pass."""
    tries = iter(range(1000))

    def refused() -> str:
        proc = cluster.kubectl("create", "configmap", f"{prefix}-{next(tries)}", *args, "-n", ns,
                               check=False)
        return proc.stderr if proc.returncode else ""

    return str(wait_for(refused, what=f"{prefix} refused"))


def _configuration(kind: str, name: str, ns: str, url: str, ca_bundle: str,
                   **hook: Any) -> str:
    return json.dumps({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{name}.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "timeoutSeconds": 5,
            "clientConfig": {"url": url, "caBundle": ca_bundle},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                       "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            **hook}]})


def test_validating_and_mutating_webhooks(cluster: Server, cluster_ns: str,
                                          webhook_server: WebhookServer) -> None:
    ns, srv = cluster_ns, webhook_server
    names = (f"deny-{ns}", f"label-{ns}")
    cluster.kubectl("create", "-f", "-", input=_configuration(
        "ValidatingWebhookConfiguration", names[0], ns, srv.url + "/validate", srv.ca_bundle))
    cluster.kubectl("create", "-f", "-", input=_configuration(
        "MutatingWebhookConfiguration", names[1], ns, srv.url + "/mutate", srv.ca_bundle))
    try:
        listed = cluster.kubectl("get", "validatingwebhookconfigurations", names[0]).stdout
        assert listed.split("\n")[0].split() == ["NAME", "WEBHOOKS", "AGE"]
        stored = json.loads(cluster.kubectl("get", "mutatingwebhookconfiguration", names[1],
                                            "-o", "json").stdout)["webhooks"][0]
        assert (stored["failurePolicy"], stored["matchPolicy"], stored["reinvocationPolicy"],
                stored["rules"][0]["scope"]) == ("Fail", "Equivalent", "Never", "*")

        stderr = _first_refusal(cluster, ns, "bad", "--from-literal=forbidden=1")
        assert f'admission webhook "{names[0]}.example.com" denied the request: the key ' \
               '"forbidden" is not allowed here' in stderr
        proc = cluster.kubectl("create", "configmap", "bad", "--from-literal=forbidden=1",
                               "-n", ns, check=False)
        assert proc.returncode != 0
        assert cluster.kubectl("get", "configmap", "bad", "-n", ns,
                               check=False).returncode != 0

        proc = cluster.kubectl("create", "configmap", "ok", "--from-literal=risky=1", "-n", ns)
        assert 'Warning: the key "risky" is risky' in proc.stderr
        labels = json.loads(cluster.kubectl("get", "configmap", "ok", "-n", ns, "-o",
                                            "json").stdout)["metadata"]["labels"]
        assert labels == {"mutated": "yes"}
        # An update is asked about too; the request names who made it.
        cluster.kubectl("label", "configmap", "ok", "tier=web", "-n", ns)
        got = json.loads(cluster.kubectl("get", "configmap", "ok", "-n", ns, "-o",
                                         "json").stdout)["metadata"]["labels"]
        assert got == {"mutated": "yes", "tier": "web"}
        review = next(r for r in reversed(srv.reviews) if r["request"]["name"] == "ok")
        assert review["apiVersion"] == "admission.k8s.io/v1"
        request = review["request"]
        assert (request["operation"], request["namespace"]) == ("UPDATE", ns)
        assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
        assert request["oldObject"]["metadata"]["labels"] == {"mutated": "yes"}
        assert "system:masters" in request["userInfo"]["groups"]

        # Another namespace is not selected: no webhook is asked.
        asked = len(srv.reviews)
        cluster.kubectl("create", "configmap", f"elsewhere-{ns}", "--from-literal=forbidden=1",
                        "-n", "default")
        assert len(srv.reviews) == asked
        cluster.kubectl("delete", "configmap", f"elsewhere-{ns}", "-n", "default")
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", names[0], check=False)
        cluster.kubectl("delete", "mutatingwebhookconfiguration", names[1], check=False)


def test_failure_policy_when_the_webhook_is_gone(cluster: Server, cluster_ns: str,
                                                 webhook_server: WebhookServer) -> None:
    ns, srv = cluster_ns, webhook_server
    gone = srv.url.rsplit(":", 1)[0] + ":1/validate"  # nothing listens on port 1
    name = f"gone-{ns}"
    cluster.kubectl("create", "-f", "-", input=_configuration(
        "ValidatingWebhookConfiguration", name, ns, gone, srv.ca_bundle))
    try:
        stderr = _first_refusal(cluster, ns, "a")
        assert f'Internal error occurred: failed calling webhook "{name}.example.com": ' \
               f'failed to call webhook: Post "{gone}?timeout=5s"' in stderr
        cluster.kubectl("patch", "validatingwebhookconfiguration", name, "--type=json", "-p",
                        '[{"op": "replace", "path": "/webhooks/0/failurePolicy", '
                        '"value": "Ignore"}]')
        tries = iter(range(1000))
        wait_for(lambda: cluster.kubectl("create", "configmap", f"b-{next(tries)}", "-n", ns,
                                         check=False).returncode == 0,
                 what="the write let through once failurePolicy is Ignore")
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, check=False)


def test_bad_configurations_are_refused(cluster: Server, cluster_ns: str) -> None:
    bad = json.loads(_configuration("ValidatingWebhookConfiguration", f"bad-{cluster_ns}",
                                    cluster_ns, "http://127.0.0.1/x", ""))
    hook = bad["webhooks"][0]
    hook["name"] = "two.parts"
    hook["timeoutSeconds"] = 60
    del hook["sideEffects"]
    proc = cluster.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    for expected in ("webhooks[0].name: Invalid value: \"two.parts\": should be a domain with "
                     "at least three segments separated by dots",
                     "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be "
                     "between 1 and 30 seconds",
                     "webhooks[0].sideEffects: Required value: must specify one of None, "
                     "NoneOnDryRun",
                     "webhooks[0].clientConfig.url: Invalid value: \"http://127.0.0.1/x\": "
                     "'https' is the only allowed URL scheme"):
        assert expected in proc.stderr, proc.stderr


def test_match_conditions_choose_what_is_sent(cluster: Server, cluster_ns: str,
                                              webhook_server: WebhookServer) -> None:
    ns, srv = cluster_ns, webhook_server
    name = f"cond-{ns}"
    cluster.kubectl("create", "-f", "-", input=_configuration(
        "ValidatingWebhookConfiguration", name, ns, srv.url + "/validate", srv.ca_bundle,
        matchConditions=[{"name": "checked-only",
                          "expression": "object.metadata.name.startsWith('checked-')"},
                         {"name": "not-by-nodes",
                          "expression": "!('system:nodes' in request.userInfo.groups)"}]))
    try:
        asked = len(srv.reviews)
        cluster.kubectl("create", "configmap", "free", "--from-literal=forbidden=1", "-n", ns)
        assert len(srv.reviews) == asked
        proc = cluster.kubectl("create", "configmap", "checked-one", "--from-literal=forbidden=1",
                               "-n", ns, check=False)
        assert "denied the request" in proc.stderr
        # A condition that cannot be evaluated fails the write (failurePolicy Fail).
        cluster.kubectl("patch", "validatingwebhookconfiguration", name, "--type=json", "-p",
                        json.dumps([{"op": "replace",
                                     "path": "/webhooks/0/matchConditions/0/expression",
                                     "value": "object.data.missing == 'x'"}]))
        stderr = _first_refusal(cluster, ns, "other", "--from-literal=a=1")
        assert f'failed calling webhook "{name}.example.com": failed to evaluate match ' \
               "condition" in stderr
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, check=False)
