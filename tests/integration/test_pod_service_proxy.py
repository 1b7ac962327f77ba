"""pods/NAME/proxy and services/NAME/proxy refused as upstream refuses
them, through the real kubectl (`kubectl get --raw`) and the official
Python client, against an API server alone (no node, no controllers: the
test writes the Nodes, Pods, Services and Endpoints itself).

No request here is sent on to a pod: every one is answered before that
(a simulated node, a missing object, no endpoints, a bad name, an address
upstream would not proxy to, RBAC), so no packet leaves the API server.
The proxying itself is tested against loopback servers in
tests/unit/apiserver/test_podproxy.py and on a real node in
tests/e2e/test_proxy.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import Server

POD_IP = "10.244.77.7"  # in the pod range; never dialed (its node is simulated)
SIM = "sim://1.0"


def _node(server: Server, name: str, runtime: str) -> None:
    http = server.http()
    code, body = http.call("POST", "/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    assert code == 201, body
    body["status"] = {"addresses": [{"type": "InternalIP", "address": "10.255.255.1"}],
                      "nodeInfo": {"containerRuntimeVersion": runtime}}
    code, body = http.call("PUT", f"/api/v1/nodes/{name}/status", body)
    assert code == 200, body


def _pod(server: Server, ns: str, name: str, node: str, ip: str | None) -> None:
    http = server.http()
    code, body = http.call("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [
            {"name": "c", "image": "busybox", "ports": [{"containerPort": 8080}]}],
            **({"nodeName": node} if node else {})}})
    assert code == 201, body
    if ip:
        body["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        code, body = http.call("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", body)
        assert code == 200, body


def _service(server: Server, ns: str, addresses: list[dict[str, Any]] | None) -> None:
    """Service "web" (port 80, named "http") and, unless None, its Endpoints."""
    http = server.http()
    code, body = http.call("POST", f"/api/v1/namespaces/{ns}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    assert code == 201, body
    if addresses is None:
        return
    subsets = [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}] \
        if addresses else []
    code, body = http.call("POST", f"/api/v1/namespaces/{ns}/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
        "subsets": subsets})
    assert code == 201, body


def _raw(server: Server, path: str, *args: str) -> str:
    """What kubectl says of a GET it was refused (it must be refused)."""
    out = server.kubectl(*args, "get", "--raw", path, check=False)
    assert out.returncode == 1, out.stdout
    return out.stderr.strip()


@pytest.fixture
def sim_node(server: Server, namespace: str) -> str:
    name = f"sim-{namespace}"[:60]
    _node(server, name, SIM)
    return name


def test_a_pod_on_a_simulated_node_is_not_dialed(server: Server, namespace: str,
                                                 sim_node: str) -> None:
    _pod(server, namespace, "p", sim_node, POD_IP)
    _service(server, namespace, [{"ip": POD_IP, "nodeName": sim_node, "targetRef": {
        "kind": "Pod", "namespace": namespace, "name": "p"}}])
    sim = f'node "{sim_node}" is simulated (pinnace sim) and runs no kubelet'
    base = f"/api/v1/namespaces/{namespace}"
    for path in (f"{base}/pods/p/proxy/", f"{base}/pods/p:8080/proxy/index.html",
                 f"{base}/pods/https:p:8443/proxy/", f"{base}/services/web:80/proxy/",
                 f"{base}/services/web:http/proxy/a/b?c=d"):
        said = _raw(server, path)
        assert said == f"Error from server (ServiceUnavailable): error trying to reach service: " \
            f"{sim}", (path, said)


def test_service_without_endpoints_or_port(server: Server, namespace: str) -> None:
    _service(server, namespace, [])
    base = f"/api/v1/namespaces/{namespace}/services"
    assert _raw(server, f"{base}/web:80/proxy/") == \
        'Error from server (ServiceUnavailable): no endpoints available for service "web"'
    assert _raw(server, f"{base}/web:81/proxy/") == \
        'Error from server (ServiceUnavailable): no service port 81 found for service "web"'
    # The official client sees the same Status.
    api = client.CoreV1Api(server.api_client())
    with pytest.raises(ApiException) as refused:
        api.connect_get_namespaced_service_proxy_with_path("web:81", namespace, "healthz")
    assert refused.value.status == 503
    assert '"reason":"ServiceUnavailable"' in refused.value.body.replace(" ", "")


def test_endpoints_that_name_no_live_pod_are_passed_over(server: Server, namespace: str) -> None:
    # No targetRef, a pod that does not exist, a pod whose IP is another:
    # upstream's isValidAddress refuses each, so nothing is left.
    _pod(server, namespace, "other", "", None)
    _service(server, namespace, [
        {"ip": POD_IP},
        {"ip": POD_IP, "targetRef": {"kind": "Pod", "namespace": namespace, "name": "gone"}},
        {"ip": POD_IP, "targetRef": {"kind": "Pod", "namespace": namespace, "name": "other"}}])
    assert _raw(server, f"/api/v1/namespaces/{namespace}/services/web:80/proxy/") == \
        'Error from server (ServiceUnavailable): no endpoints available for service "web:80"'


def test_bad_names_and_missing_objects(server: Server, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    for path, said in (
            ("pods/a:b:c:d", 'Error from server (BadRequest): invalid pod request "a:b:c:d"'),
            ("pods/:80", 'Error from server (BadRequest): invalid pod request ":80"'),
            ("services/ftp:web:21",
             'Error from server (BadRequest): invalid service request "ftp:web:21"'),
            ("pods/nope", 'Error from server (NotFound): pods "nope" not found'),
            # A port number is looked up on the Service; a name goes straight to its Endpoints.
            ("services/nope:80", 'Error from server (NotFound): services "nope" not found'),
            ("services/nope", 'Error from server (NotFound): endpoints "nope" not found')):
        assert _raw(server, f"{base}/{path}/proxy/") == said, path


def test_addresses_upstream_does_not_proxy_to(server: Server, namespace: str) -> None:
    node = f"real-{namespace}"[:60]
    _node(server, node, "containerd://1.7")
    _pod(server, namespace, "loop", node, "127.0.0.1")
    _pod(server, namespace, "linklocal", node, "169.254.0.9")
    _pod(server, namespace, "pending", "", None)
    for pod in ("loop", "linklocal", "pending"):
        assert _raw(server, f"/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/") == \
            "Error from server (BadRequest): address not allowed", pod


def test_methods(server: Server, namespace: str, sim_node: str) -> None:
    _pod(server, namespace, "p", sim_node, POD_IP)
    http = server.http()
    path = f"/api/v1/namespaces/{namespace}/pods/p/proxy/x"
    code, body = http.call("PROPFIND", path)
    assert code == 405 and body["reason"] == "MethodNotAllowed", body
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        code, body = http.call(method, path, b"{}")
        assert code == 503 and "runs no kubelet" in body["message"], (method, body)
    code, _ = http.call("HEAD", path)
    assert code == 503
    # Outside a namespace there is no such resource.
    code, body = http.call("GET", "/api/v1/pods/p/proxy/")
    assert code == 404, body


def test_rbac_wants_the_proxy_subresource(server: Server, namespace: str, sim_node: str) -> None:
    _pod(server, namespace, "p", sim_node, POD_IP)
    _service(server, namespace, [])
    server.kubectl("create", "role", "reader", "-n", namespace, "--verb=get",
                   "--resource=pods,services")
    server.kubectl("create", "rolebinding", "reader", "-n", namespace, "--role=reader",
                   "--user=bob")
    as_bob = ("--as", "bob")
    assert server.kubectl(*as_bob, "get", "pod", "p", "-n", namespace).returncode == 0
    base = f"/api/v1/namespaces/{namespace}"
    assert _raw(server, f"{base}/pods/p:8080/proxy/", *as_bob) == (
        f'Error from server (Forbidden): pods "p:8080" is forbidden: User "bob" cannot get '
        f'resource "pods/proxy" in API group "" in the namespace "{namespace}"')
    assert _raw(server, f"{base}/services/web/proxy/", *as_bob) == (
        f'Error from server (Forbidden): services "web" is forbidden: User "bob" cannot get '
        f'resource "services/proxy" in API group "" in the namespace "{namespace}"')
    # A POST is "create" on the subresource.
    server.kubectl("create", "role", "proxier", "-n", namespace, "--verb=get",
                   "--resource=pods/proxy,services/proxy")
    server.kubectl("create", "rolebinding", "proxier", "-n", namespace, "--role=proxier",
                   "--user=bob")
    said = server.kubectl(*as_bob, "create", "--raw", f"{base}/pods/p/proxy/x", "-f", "-",
                          input="{}", check=False).stderr
    assert 'cannot create resource "pods/proxy"' in said, said
    # Allowed: the request reaches the proxy, which answers for the pod.
    assert "runs no kubelet" in _raw(server, f"{base}/pods/p:8080/proxy/", *as_bob)
    assert "no endpoints available" in _raw(server, f"{base}/services/web/proxy/", *as_bob)
