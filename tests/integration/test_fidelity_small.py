"""Smaller fidelity items (issue 11, item 14) seen through real clients:
/version, the Endpoints deprecation warning, stale OpenAPI hashes, and an
expired continue token."""

from __future__ import annotations

import json
import urllib.request

from pinnace.testing import Cluster
from tests.conftest import Server


def test_version_carries_the_emulation_and_compatibility_versions(server: Server) -> None:
    out = json.loads(server.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert (out["major"], out["minor"]) == ("1", "37")
    assert (out["emulationMajor"], out["emulationMinor"]) == ("1", "37")
    assert (out["minCompatibilityMajor"], out["minCompatibilityMinor"]) == ("1", "36")
    assert out["gitVersion"].startswith("v1.37.")


def test_the_endpoints_api_warns_that_it_is_deprecated(server: Server, namespace: str) -> None:
    got = server.kubectl("get", "endpoints", "-n", namespace)
    assert "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 " \
           "EndpointSlice" in got.stderr
    # Its successor does not.
    assert "deprecated" not in server.kubectl("get", "endpointslices", "-n", namespace).stderr


def test_a_stale_openapi_hash_redirects_to_the_current_one(server: Server) -> None:
    http = server.http()
    code, index = http.call("GET", "/openapi/v3")
    current = index["paths"]["api/v1"]["serverRelativeURL"]
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=http.ctx),
                                         _NoRedirect())
    try:
        opener.open(server.url + "/openapi/v3/api/v1?hash=0123ABC")
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 301 and e.headers["Location"] == current
    with opener.open(server.url + current) as resp:
        assert resp.headers["Cache-Control"] == "public, immutable"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_an_expired_continue_token_gets_upstreams_410_and_a_token_to_go_on() -> None:
    with Cluster(controllers=None) as c:
        ns = c.create_namespace("pages")
        for i in range(5):
            c.kubectl("create", "configmap", f"c{i}", "-n", ns)
        code, page = c.request("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=2")
        token = page["metadata"]["continue"]
        c.kubectl("create", "configmap", "later", "-n", ns)
        # Compact the history the token points into (what the store does on its own, later).
        runtime = c._runtime
        store = runtime.server.store  # type: ignore[union-attr]
        runtime._run(store.compact(int(page["metadata"]["resourceVersion"]) + 1))  # type: ignore[union-attr]
        code, status = c.request("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=2&"
                                        f"continue={token}")
        assert code == 410 and status["reason"] == "Expired", status
        assert status["message"].startswith("The provided continue parameter is too old")
        code, rest = c.request("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=10&"
                                      f"continue={status['metadata']['continue']}")
        assert code == 200
        assert [i["metadata"]["name"] for i in rest["items"]] == ["c2", "c3", "c4", "later"]


def test_the_system_namespaces_may_not_be_deleted(server: Server) -> None:
    for ns in ("default", "kube-system", "kube-public"):
        proc = server.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        assert proc.returncode != 0
        assert f'namespaces "{ns}" is forbidden: this namespace may not be deleted' in proc.stderr
        phase = server.kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}").stdout
        assert phase == "Active"
