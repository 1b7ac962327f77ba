"""Endpoints and EndpointSlices follow the pods a Service selects; the test
plays the kubelet by setting pod IPs and readiness through pods/status."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pinnace.controllers.endpoints import EndpointsController
from pinnace.controllers.endpointslice import CONTROLLER_NAME, EndpointSliceController
from tests.conftest import Server, wait_for
from tests.integration.controllers.batch_harness import Controllers


@pytest.fixture
def ctrl(server: Server) -> Iterator[Controllers]:
    with Controllers(server, [EndpointsController, EndpointSliceController],
                     options={"max_endpoints_per_slice": 2}) as h:
        yield h


def create(server: Server, ns: str, obj: dict) -> None:
    server.kubectl("-n", ns, "create", "-f", "-", input=json.dumps(obj))


def pod(name: str, app: str = "web", port_name: str = "http", port: int = 8080) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [
                {"name": port_name, "containerPort": port}]}]}}


def kubelet(server: Server, ns: str, name: str, ip: str, ready: bool) -> None:
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    server.kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": status}))


def get(server: Server, ns: str, *args: str) -> dict:
    out = server.kubectl("-n", ns, "get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def slices(server: Server, ns: str, svc: str) -> list[dict]:
    return get(server, ns, "endpointslices", "-l", f"kubernetes.io/service-name={svc}")["items"]


def test_endpoints_and_slices_track_pods(server: Server, namespace: str,
                                         ctrl: Controllers) -> None:
    ns = namespace
    for n in ("a", "b", "c"):
        create(server, ns, pod(n))
    create(server, ns, pod("other", app="db"))
    create(server, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"selector": {"app": "web"}, "ports": [
                            {"name": "http", "port": 80, "targetPort": "http"},
                            {"name": "raw", "port": 81, "targetPort": 9000}]}})
    # no pod has an IP yet: empty Endpoints, one placeholder slice
    ep = wait_for(lambda: get(server, ns, "endpoints", "web"), what="endpoints")
    assert not ep.get("subsets")
    placeholder = wait_for(lambda: slices(server, ns, "web"), what="placeholder slice")
    assert len(placeholder) == 1 and not placeholder[0].get("endpoints")
    kubelet(server, ns, "a", "10.1.0.1", True)
    kubelet(server, ns, "b", "10.1.0.2", False)
    kubelet(server, ns, "c", "10.1.0.3", True)
    kubelet(server, ns, "other", "10.1.0.9", True)

    def settled() -> dict | None:
        ep = get(server, ns, "endpoints", "web")
        subs = ep.get("subsets") or []
        if len(subs) == 1 and len(subs[0].get("addresses", [])) == 2 and \
                len(subs[0].get("notReadyAddresses", [])) == 1:
            return subs[0]
        return None
    sub = wait_for(settled, what="2 ready + 1 not ready")
    assert [a["ip"] for a in sub["addresses"]] == ["10.1.0.1", "10.1.0.3"]
    assert sub["notReadyAddresses"][0]["targetRef"]["name"] == "b"
    assert sub["addresses"][0]["targetRef"]["kind"] == "Pod"
    assert sorted((p["name"], p["port"]) for p in sub["ports"]) == [("http", 8080), ("raw", 9000)]

    def sliced() -> list[dict] | None:
        sl = slices(server, ns, "web")
        eps = [e for s in sl for e in s.get("endpoints") or []]
        return sl if len(eps) == 3 and len(sl) == 2 else None
    sl = wait_for(sliced, what="3 endpoints in 2 slices (max 2 per slice)")
    for s in sl:
        assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
            CONTROLLER_NAME
        assert s["metadata"]["name"].startswith("web-")
        assert s["addressType"] == "IPv4"
        assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    eps = {e["targetRef"]["name"]: e for s in sl for e in s["endpoints"]}
    assert eps["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert eps["a"]["conditions"]["ready"] is True
    # a pod going away leaves both
    server.kubectl("-n", ns, "delete", "pod", "a", "--wait=false")
    wait_for(lambda: [a["ip"] for a in (get(server, ns, "endpoints", "web")["subsets"][0]
                                        .get("addresses") or [])] == ["10.1.0.3"],
             what="a removed")
    wait_for(lambda: sorted(e["targetRef"]["name"] for s in slices(server, ns, "web")
                            for e in s.get("endpoints") or []) == ["b", "c"],
             what="a removed from slices")
    # deleting the service removes its endpoints
    server.kubectl("-n", ns, "delete", "service", "web")
    wait_for(lambda: not get(server, ns, "endpoints", "web"), what="endpoints deleted")


def test_headless_publish_not_ready_and_selectorless(server: Server, namespace: str,
                                                     ctrl: Controllers) -> None:
    ns = namespace
    create(server, ns, pod("h", app="hl"))
    kubelet(server, ns, "h", "10.2.0.1", False)
    create(server, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hl"},
                        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                                 "selector": {"app": "hl"}}})
    create(server, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
                        "spec": {"ports": [{"port": 80}]}})
    ep = wait_for(lambda: (e := get(server, ns, "endpoints", "hl")).get("subsets") and e,
                  what="headless endpoints")
    assert ep["subsets"][0]["addresses"][0]["ip"] == "10.2.0.1"
    assert "ports" not in ep["subsets"][0]
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    sl = wait_for(lambda: [s for s in slices(server, ns, "hl") if s.get("endpoints")],
                  what="headless slice")
    assert sl[0]["endpoints"][0]["conditions"]["ready"] is True
    assert not get(server, ns, "endpoints", "manual")
    assert not slices(server, ns, "manual")
