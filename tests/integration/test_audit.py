"""The audit log through real kubectl: a server started with
--audit-policy-file and --audit-log-path writes kube-apiserver's
audit.k8s.io/v1 events, one JSON line per stage, and tells clients the
audit ID in the Audit-Id header."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KUBECTL, Server, start_server, wait_for

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
"""
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("audit")
    (d / "policy.yaml").write_text(POLICY)
    srv = start_server(d / "data", "--datastore", "memory",
                       "--audit-policy-file", str(d / "policy.yaml"),
                       "--audit-log-path", str(d / "log" / "audit.log"))
    yield srv
    srv.stop()


def log_path(srv: Server) -> Path:
    return srv.data_dir.parent / "log" / "audit.log"


def events(srv: Server) -> list[dict[str, Any]]:
    path = log_path(srv)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def request_events(srv: Server, match: Any, stages: int = 2) -> list[dict[str, Any]]:
    """The events of the one request ``match`` picks, once ``stages`` of them are written."""
    def found() -> list[dict[str, Any]] | None:
        chosen = [e for e in events(srv) if match(e)]
        ids = {e["auditID"] for e in chosen}
        if len(ids) != 1:
            return None
        return chosen if len(chosen) >= stages else None
    return wait_for(found, timeout=10, what="the request's audit events")  # type: ignore[no-any-return]


def test_configmap_create_is_logged_with_both_objects(audited: Server) -> None:
    audited.kubectl("create", "configmap", "audited-cm", "--from-literal=k=v")
    evs = request_events(audited, lambda e: e["verb"] == "create" and e.get(
        "objectRef", {}).get("resource") == "configmaps")
    received, complete = evs
    assert [received["stage"], complete["stage"]] == ["RequestReceived", "ResponseComplete"]
    assert received["auditID"] == complete["auditID"]
    assert UUID.match(complete["auditID"])
    assert complete["kind"] == "Event" and complete["apiVersion"] == "audit.k8s.io/v1"
    assert complete["level"] == "RequestResponse"
    assert complete["requestURI"].startswith("/api/v1/namespaces/default/configmaps?")
    assert complete["user"]["username"] == "admin"
    assert "system:masters" in complete["user"]["groups"]
    assert complete["sourceIPs"] == ["127.0.0.1"]
    assert complete["userAgent"].startswith("kubectl")
    assert complete["objectRef"] == {"resource": "configmaps", "namespace": "default",
                                     "name": "audited-cm", "apiVersion": "v1"}
    assert complete["responseStatus"] == {"metadata": {}, "code": 201}
    assert complete["requestObject"]["data"] == {"k": "v"}
    assert complete["responseObject"]["metadata"]["name"] == "audited-cm"
    assert complete["responseObject"]["metadata"]["uid"]
    assert "managedFields" not in complete["responseObject"]["metadata"]  # omitManagedFields
    assert complete["annotations"] == {"authorization.k8s.io/decision": "allow",
                                       "authorization.k8s.io/reason": ""}
    assert "requestObject" not in received and "responseStatus" not in received
    assert "annotations" not in received
    for e in evs:
        assert MICROTIME.match(e["requestReceivedTimestamp"])
        assert MICROTIME.match(e["stageTimestamp"])
    assert received["stageTimestamp"] == received["requestReceivedTimestamp"]
    assert complete["stageTimestamp"] >= complete["requestReceivedTimestamp"]
    assert list(complete) == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI",
                              "verb", "user", "sourceIPs", "userAgent", "objectRef",
                              "responseStatus", "requestObject", "responseObject",
                              "requestReceivedTimestamp", "stageTimestamp", "annotations"]


def test_get_pods_is_logged_at_metadata(audited: Server) -> None:
    audited.kubectl("get", "pods", "-n", "kube-system")
    evs = request_events(audited, lambda e: e["verb"] == "list" and e.get(
        "objectRef", {}).get("namespace") == "kube-system")
    assert [e["stage"] for e in evs] == ["RequestReceived", "ResponseComplete"]
    complete = evs[1]
    assert complete["level"] == "Metadata"
    assert complete["objectRef"] == {"resource": "pods", "namespace": "kube-system",
                                     "apiVersion": "v1"}
    assert complete["responseStatus"] == {"metadata": {}, "code": 200}
    assert "requestObject" not in complete and "responseObject" not in complete


def test_forbidden_request_carries_the_decision(audited: Server) -> None:
    proc = audited.kubectl("get", "secrets", "-n", "default", "--as", "mallory", check=False)
    assert proc.returncode != 0 and "Forbidden" in proc.stderr
    # Only the list of secrets: kubectl may also ask discovery as mallory (when its
    # cache is cold), which mallory may do.
    evs = request_events(audited, lambda e: e.get("impersonatedUser", {}).get(
        "username") == "mallory" and e.get("objectRef", {}).get("resource") == "secrets",
        stages=1)
    complete = evs[-1]
    assert complete["stage"] == "ResponseComplete"
    assert complete["user"]["username"] == "admin"  # who asked; impersonatedUser: as whom
    assert complete["impersonatedUser"] == {"username": "mallory",
                                            "groups": ["system:authenticated"]}
    assert complete["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert complete["responseStatus"]["code"] == 403
    assert complete["responseStatus"]["reason"] == "Forbidden"
    assert complete["responseStatus"]["status"] == "Failure"
    assert 'User "mallory" cannot list resource "secrets"' in \
        complete["responseStatus"]["message"]
    assert complete["responseStatus"]["details"] == {"kind": "secrets"}
    # The RequestReceived event was written before impersonation and authorization.
    received = [e for e in events(audited) if e["auditID"] == complete["auditID"]][0]
    assert received["stage"] == "RequestReceived"
    assert "impersonatedUser" not in received


def test_unauthenticated_request_is_logged_without_user(audited: Server) -> None:
    ctx = ssl.create_default_context(cafile=str(audited.data_dir / "tls" / "ca.crt"))
    req = urllib.request.Request(audited.url + "/api/v1/namespaces/default/services?x=401",
                                 headers={"Authorization": "Bearer not-a-token"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert e.value.code == 401
    assert UUID.match(e.value.headers["Audit-Id"])
    evs = request_events(audited, lambda e: e["requestURI"].endswith("?x=401"), stages=1)
    time.sleep(0.3)
    evs = [e for e in events(audited) if e["requestURI"].endswith("?x=401")]
    assert len(evs) == 1  # upstream's failed-authentication audit: one event
    ev = evs[0]
    assert ev["stage"] == "ResponseStarted"
    assert ev["user"] == {}
    assert ev["verb"] == "list"
    assert ev["auditID"] == e.value.headers["Audit-Id"]
    assert ev["responseStatus"]["code"] == 401
    assert ev["responseStatus"]["reason"] == "Unauthorized"


def test_audit_id_header_is_returned_and_a_clients_id_is_kept(audited: Server) -> None:
    http = audited.http()
    req = urllib.request.Request(audited.url + "/api/v1/namespaces/default/endpoints?x=id",
                                 headers={"Audit-ID": "my-own-audit-id"})
    with urllib.request.urlopen(req, context=http.ctx, timeout=10) as resp:
        assert resp.headers["Audit-Id"] == "my-own-audit-id"
    evs = request_events(audited, lambda e: e["requestURI"].endswith("?x=id"))
    assert {e["auditID"] for e in evs} == {"my-own-audit-id"}


def test_health_checks_are_not_logged(audited: Server) -> None:
    http = audited.http()
    for path in ("/healthz", "/readyz", "/livez/ping"):
        assert http.call("GET", path)[0] == 200
    audited.kubectl("get", "--raw", "/version")  # a marker after them
    request_events(audited, lambda e: e["requestURI"] == "/version")
    assert not [e for e in events(audited)
                if e["requestURI"].startswith(("/healthz", "/readyz", "/livez"))]


def test_watch_cut_short_has_a_response_started(audited: Server) -> None:
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(audited.kubeconfig), "get",
                             "serviceaccounts", "-n", "kube-public", "--watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: [e for e in events(audited) if e["verb"] == "watch" and e.get(
            "objectRef", {}).get("namespace") == "kube-public"
            and e["stage"] == "ResponseStarted"], timeout=15, what="the watch's ResponseStarted")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The server learns the client is gone when it next writes to the watch.
    audited.kubectl("create", "serviceaccount", "wake-the-watch", "-n", "kube-public")
    evs = request_events(audited, lambda e: e["verb"] == "watch" and e.get(
        "objectRef", {}).get("namespace") == "kube-public", stages=3)
    assert [e["stage"] for e in evs] == ["RequestReceived", "ResponseStarted",
                                         "ResponseComplete"]
    assert evs[1]["responseStatus"] == {"metadata": {}, "code": 200}
    assert evs[2]["responseStatus"]["code"] == 200
    assert "watch=true" in evs[0]["requestURI"]


def test_no_policy_no_log_and_a_bad_policy_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n")
    proc = subprocess.run(
        [*_pinnace(), "apiserver", "--data-dir", str(tmp_path / "d"), "--datastore", "memory",
         "--listen", "127.0.0.1:0", "--audit-policy-file", str(bad),
         "--audit-log-path", str(tmp_path / "audit.log")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert 'rules[0].level: Unsupported value: "Everything"' in proc.stderr
    assert str(bad) in proc.stderr
    assert not (tmp_path / "audit.log").exists()


def _pinnace() -> list[str]:
    import sys

    return [sys.executable, "-m", "pinnace.cli.main"]


def test_admission_annotations_reach_the_event(audited: Server) -> None:
    """Pod Security says which policy it enforced, and what audit mode found."""
    ns = "audited-psa"
    audited.kubectl("create", "namespace", ns)
    audited.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline",
                    "pod-security.kubernetes.io/audit=restricted")
    audited.kubectl("run", "web", "--image=busybox", "-n", ns)
    evs = request_events(audited, lambda e: e["verb"] == "create" and e.get(
        "objectRef", {}).get("resource") == "pods" and e.get("objectRef", {}).get(
        "namespace") == ns)
    annotations = evs[-1]["annotations"]
    assert annotations["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest"
    assert annotations["pod-security.kubernetes.io/audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false')
    assert annotations["authorization.k8s.io/decision"] == "allow"
