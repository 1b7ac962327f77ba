"""Request attributes read off the path as upstream's RequestInfoFactory reads them."""

from __future__ import annotations

import pytest

from pinnace.apiserver.requestinfo import request_info


@pytest.mark.parametrize("method,path,query,expect", [
    ("GET", "/api/v1/namespaces/a/pods", {}, ("list", "", "a", "pods", "", "")),
    ("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}, ("watch", "", "a", "pods", "", "")),
    ("GET", "/api/v1/watch/namespaces/a/pods", {}, ("watch", "", "a", "pods", "", "")),
    ("GET", "/api/v1/namespaces/a/pods/web/log", {}, ("get", "", "a", "pods", "log", "web")),
    ("POST", "/apis/apps/v1/namespaces/a/deployments", {},
     ("create", "apps", "a", "deployments", "", "")),
    ("PUT", "/apis/apps/v1/namespaces/a/deployments/d/scale", {},
     ("update", "apps", "a", "deployments", "scale", "d")),
    ("PATCH", "/api/v1/nodes/n1/status", {}, ("patch", "", "", "nodes", "status", "n1")),
    ("DELETE", "/api/v1/namespaces/a/pods", {}, ("deletecollection", "", "a", "pods", "", "")),
    ("DELETE", "/api/v1/namespaces/a/pods/p", {}, ("delete", "", "a", "pods", "", "p")),
    # A namespace is itself in its namespace; /status and /finalize are its subresources.
    ("GET", "/api/v1/namespaces/a", {}, ("get", "", "a", "namespaces", "", "a")),
    ("PUT", "/api/v1/namespaces/a/finalize", {}, ("update", "", "a", "namespaces", "finalize", "a")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "", "namespaces", "", "")),
    # A list narrowed to one name is authorized as that name.
    ("GET", "/api/v1/namespaces/a/configmaps", {"fieldSelector": "metadata.name==cm", "watch": "1"},
     ("watch", "", "a", "configmaps", "", "cm")),
])
def test_resource_requests(method: str, path: str, query: dict[str, str],
                           expect: tuple[str, ...]) -> None:
    info = request_info(method, path, query)
    assert info.resource_request
    assert (info.verb, info.api_group, info.namespace, info.resource, info.subresource,
            info.name) == expect


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1",
                                  "/healthz", "/version", "/openapi/v3/api/v1", "/metrics"])
def test_discovery_and_other_paths_are_non_resource(path: str) -> None:
    info = request_info("GET", path)
    assert not info.resource_request and info.verb == "get" and info.path == path


def test_websocket_exec_needs_create() -> None:
    assert request_info("GET", "/api/v1/namespaces/a/pods/p/exec", {}, upgrade=True).verb == "create"
    assert request_info("GET", "/api/v1/namespaces/a/pods/p/log", {}, upgrade=True).verb == "get"


def test_websocket_to_the_kubelets_streams_through_nodes_proxy_needs_create() -> None:
    for stream in ("exec", "attach", "run", "portForward"):
        info = request_info("GET", f"/api/v1/nodes/n/proxy/{stream}/a/p/c", {}, upgrade=True)
        assert (info.resource, info.subresource, info.verb) == ("nodes", "proxy", "create")
    # However the path is spelled, it is the kubelet path it leads to that counts.
    for path in ("x/../exec/a/p/c", "./exec/a/p/c", "stats/../../exec/a/p/c", "%65xec/a/p/c"):
        assert request_info("GET", f"/api/v1/nodes/n/proxy/{path}", {},
                            upgrade=True).verb == "create", path
    assert request_info("GET", "/api/v1/nodes/n/proxy/exec/a/p/c", {}).verb == "get"
    assert request_info("GET", "/api/v1/nodes/n/proxy/stats/summary", {}, upgrade=True).verb == "get"
