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


def test_a_new_objects_status_is_there_and_empty(server: Server, namespace: str) -> None:
    """Upstream resets a new object's status struct, which its JSON shows as
    {}: scripts read obj["status"] and the official client's .status at once."""
    from kubernetes import client

    ns = namespace
    server.kubectl("-n", ns, "create", "deployment", "web", "--image=busybox")
    server.kubectl("-n", ns, "create", "cronjob", "tick", "--image=busybox",
                   "--schedule=0 0 1 1 *")
    server.kubectl("-n", ns, "create", "service", "clusterip", "svc", "--tcp=80:8080")
    for kind, name in (("deployment", "web"), ("cronjob", "tick")):
        got = json.loads(server.kubectl("-n", ns, "get", kind, name, "-o", "json").stdout)
        assert "status" in got, kind
    svc = json.loads(server.kubectl("-n", ns, "get", "service", "svc", "-o", "json").stdout)
    assert svc["status"] == {"loadBalancer": {}}
    # A status written over it stays the controller's business: a client
    # reading right after the create sees an empty status, not None.
    with server.api_client() as api:
        body = client.BatchV1Api(api).create_namespaced_cron_job(ns, {
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "py"},
            "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {
                "template": {"spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "c", "image": "busybox"}]}}}}}})
        assert body.status is not None and body.status.active is None
        # Fields upstream's JSON always shows come as zeros (the client
        # refuses a StatefulSet status without its replicas).
        sts = client.AppsV1Api(api).create_namespaced_stateful_set(ns, {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        assert (sts.status.replicas, sts.status.available_replicas) == (0, 0)


def test_new_volumes_and_claims_are_pending_and_a_volume_dates_its_phase() -> None:
    """Upstream's create answers a PV or PVC as Pending, and its API server
    stamps a PV's lastPhaseTransitionTime whenever the phase changes."""
    from kubernetes import client

    with Cluster(controllers=None) as c, c.api_client() as api:
        core = client.CoreV1Api(api)
        pv = core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "disk"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/tmp/disk"}}})
        assert pv.status.phase == "Pending" and pv.status.last_phase_transition_time is not None
        ns = c.create_namespace("claims")
        pvc = core.create_namespaced_persistent_volume_claim(ns, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}})
        assert pvc.status.phase == "Pending"

        def write_status(status: dict) -> dict:
            cur = c.request("GET", "/api/v1/persistentvolumes/disk")[1]
            code, out = c.request("PUT", "/api/v1/persistentvolumes/disk/status",
                                  {**cur, "status": status})
            assert code == 200, out
            return out["status"]

        # A writer's own time is kept; so is the last one while the phase stays.
        st = write_status({"phase": "Available", "lastPhaseTransitionTime": "2020-01-02T03:04:05Z"})
        assert st["lastPhaseTransitionTime"] == "2020-01-02T03:04:05Z"
        st = write_status({"phase": "Available", "message": "still"})
        assert st["lastPhaseTransitionTime"] == "2020-01-02T03:04:05Z"
        # A new phase without a time of its own gets the server's.
        st = write_status({"phase": "Released"})
        assert st["lastPhaseTransitionTime"] not in (None, "2020-01-02T03:04:05Z")


def test_discovery_lists_the_subresources_upstream_lists(server: Server) -> None:
    """The connections (logs, exec, attach, port-forward, proxies) and the
    pod's writable subresources, with upstream's verbs and kinds, in the
    legacy list (the official client) and the aggregated document (what
    kubectl reads), alphabetically as upstream lists them."""
    from kubernetes import client

    api = client.CoreV1Api(server.api_client())
    got = {r.name: (r.kind, sorted(r.verbs)) for r in api.get_api_resources().resources}
    proxy = ["create", "delete", "get", "patch", "update"]
    want = {"pods/attach": ("PodAttachOptions", ["create", "get"]),
            "pods/exec": ("PodExecOptions", ["create", "get"]),
            "pods/log": ("Pod", ["get"]),
            "pods/portforward": ("PodPortForwardOptions", ["create", "get"]),
            "pods/proxy": ("PodProxyOptions", proxy),
            "pods/ephemeralcontainers": ("Pod", ["get", "patch", "update"]),
            "pods/resize": ("Pod", ["get", "patch", "update"]),
            "nodes/proxy": ("NodeProxyOptions", proxy),
            "services/proxy": ("ServiceProxyOptions", proxy)}
    assert {name: got.get(name) for name in want} == want
    names = [n for n in got if n.startswith("pods/")]
    assert names == sorted(names)
    http = server.http()
    code, doc = http.call(
        "GET", "/api", accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert code == 200, doc
    pods = next(r for r in doc["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    subs = {s["subresource"]: (s["responseKind"]["kind"], sorted(s["verbs"]))
            for s in pods["subresources"]}
    assert subs["exec"] == ("PodExecOptions", ["create", "get"])
    assert subs["proxy"] == ("PodProxyOptions", proxy)
    assert list(subs) == sorted(subs)
