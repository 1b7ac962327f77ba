"""Services on a real node, through the agent's proxy: a ClusterIP spreading
over pods, NodePort on the node's addresses and 127.0.0.1, session
affinity, a pod reaching itself through its service (hairpin), a service
without endpoints refused at once, externalTrafficPolicy Local keeping the
client's address, and a LoadBalancer address that answers.

Clients are pods, the node itself, and a "client" network namespace this
module creates: a machine outside the cluster, joined to the node by a veth
pair in 198.18.0.0/30 (a benchmarking range), which it removes afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import KUBECTL, wait_for
from tests.e2e.conftest import guard_routes, phase, until_answers, wait_pod

IMAGE = "busybox:1.36"
# A CGI answering "<pod name> <client address>": which pod answered, and whom it saw.
SERVE = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
         "echo $(hostname) $REMOTE_ADDR\\n' > /www/cgi-bin/id && chmod +x /www/cgi-bin/id && "
         "exec httpd -f -p 8080 -h /www")
CLIENT_NS = "pinnace-test-client"


def _apply(node, ns, obj) -> None:  # type: ignore[no-untyped-def]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _backend(node, ns, name: str, app: str = "web") -> dict:  # type: ignore[no-untyped-def]
    _apply(node, ns, {"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": name, "labels": {"app": app}},
                      "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                          {"name": "web", "image": IMAGE, "command": ["sh", "-c", SERVE],
                           "readinessProbe": {"httpGet": {"path": "/cgi-bin/id", "port": 8080},
                                              "periodSeconds": 1}}]}})
    return wait_pod(node, ns, name, lambda p: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions", [])), what=f"{name} Ready")


def _client(node, ns, name: str = "client") -> None:  # type: ignore[no-untyped-def]
    _apply(node, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                      "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                          {"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}})
    wait_pod(node, ns, name, lambda p: phase(p) == "Running", what=f"{name} Running")


def _service(node, ns, name: str = "web", app: str = "web", **spec) -> dict:  # type: ignore[no-untyped-def]
    _apply(node, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                      "spec": {"selector": {"app": app},
                               "ports": [{"name": "http", "port": 80, "targetPort": 8080}], **spec}})
    return json.loads(node.kubectl("get", "svc", name, "-n", ns, "-o", "json").stdout)


def _wget(node, ns, pod: str, url: str, check: bool = True):  # type: ignore[no-untyped-def]
    # (busybox's wget -T crashes here; timeout(1) bounds it instead)
    return node.kubectl("exec", pod, "-n", ns, "--", "timeout", "5", "wget", "-q", "-O", "-", url,
                        check=check)


def _get(url: str, netns: str = "") -> str:
    if netns:
        out = subprocess.run(["ip", "netns", "exec", netns, "python3", "-c",
                              "import sys, urllib.request; print(urllib.request.urlopen("
                              "sys.argv[1], timeout=5).read().decode().strip())", url],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode().strip()


def _addr(remote: str) -> str:
    """httpd's REMOTE_ADDR ("[::ffff:10.244.0.3]", it listens on IPv6) as IPv4."""
    return remote.strip("[]").removeprefix("::ffff:")


def _answers(get, n: int = 30) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """pod name → client addresses it saw, over n requests."""
    seen: dict[str, set[str]] = {}
    for _ in range(n):
        pod, client = get().split()
        seen.setdefault(pod, set()).add(_addr(client))
    return seen


def _node_ip(node) -> str:  # type: ignore[no-untyped-def]
    n = json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    return next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")


@pytest.fixture(scope="module")
def outside(node) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A client namespace outside the cluster, reaching the node at 198.18.0.1."""
    assert all(guard_routes().values())
    subprocess.run(["ip", "netns", "del", CLIENT_NS], capture_output=True)
    subprocess.run(["ip", "link", "del", "pn-client"], capture_output=True)
    try:
        for cmd in (["ip", "netns", "add", CLIENT_NS],
                    ["ip", "link", "add", "pn-client", "type", "veth", "peer", "name", "eth0",
                     "netns", CLIENT_NS],
                    ["ip", "addr", "add", "198.18.0.1/30", "dev", "pn-client"],
                    ["ip", "link", "set", "pn-client", "up"],
                    ["ip", "-n", CLIENT_NS, "addr", "add", "198.18.0.2/30", "dev", "eth0"],
                    ["ip", "-n", CLIENT_NS, "link", "set", "eth0", "up"],
                    ["ip", "-n", CLIENT_NS, "link", "set", "lo", "up"],
                    # Only the node's addresses, nothing else, through the veth.
                    ["ip", "-n", CLIENT_NS, "route", "add", f"{_node_ip(node)}/32", "via", "198.18.0.1"]):
            subprocess.run(cmd, check=True, capture_output=True)
        yield CLIENT_NS
    finally:
        subprocess.run(["ip", "netns", "del", CLIENT_NS], capture_output=True)
        subprocess.run(["ip", "link", "del", "pn-client"], capture_output=True)


def test_cluster_ip_spreads_over_pods_and_reaches_them_from_pods_and_the_node(node, ns):
    for name in ("web-a", "web-b"):
        _backend(node, ns, name)
    _client(node, ns)
    ip = _service(node, ns)["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    seen = until_answers(lambda: _answers(lambda: _wget(node, ns, "client", f"http://{ip}/cgi-bin/id").stdout),
                          "both pods through the ClusterIP")
    assert set(seen) == {"web-a", "web-b"}, seen
    client_ip = json.loads(node.kubectl("get", "pod", "client", "-n", ns, "-o", "json").stdout
                           )["status"]["podIP"]
    assert seen["web-a"] | seen["web-b"] == {client_ip}  # pod to pod: no masquerade
    from_node = _answers(lambda: _get(f"http://{ip}/cgi-bin/id"))
    assert set(from_node) == {"web-a", "web-b"}

    # A pod that goes away leaves the service at once; its own rules go too.
    node.kubectl("delete", "pod", "web-b", "-n", ns, "--wait=true")
    wait_for(lambda: set(_answers(lambda: _get(f"http://{ip}/cgi-bin/id"), 10)) == {"web-a"},
             timeout=20, interval=0.3, what="web-b gone from the service")


def test_session_affinity_keeps_a_client_on_one_pod(node, ns):
    for name in ("aff-a", "aff-b"):
        _backend(node, ns, name, app="aff")
    _client(node, ns)
    ip = _service(node, ns, "aff", app="aff", sessionAffinity="ClientIP")["spec"]["clusterIP"]
    seen = until_answers(lambda: _answers(lambda: _wget(node, ns, "client", f"http://{ip}/cgi-bin/id").stdout, 12),
                          "the service")
    assert len(seen) == 1, seen


def test_a_pod_reaches_itself_through_its_service(node, ns):
    _backend(node, ns, "self", app="self")
    ip = _service(node, ns, "self", app="self")["spec"]["clusterIP"]
    out = until_answers(lambda: _wget(node, ns, "self", f"http://{ip}/cgi-bin/id").stdout,
                         "the pod through its own service")
    assert out.split()[0] == "self"


def test_a_service_without_endpoints_refuses_at_once(node, ns):
    _client(node, ns)
    ip = _service(node, ns, "nobody", app="nobody")["spec"]["clusterIP"]
    out = until_answers(lambda: (lambda r: r if "refused" in r.stderr else None)(
        _wget(node, ns, "client", f"http://{ip}/", check=False)), "a refusal")
    assert out.returncode != 0 and "Connection refused" in out.stderr, out.stderr


def test_node_port_answers_on_every_node_address_and_localhost(node, ns, outside):
    _backend(node, ns, "np-a", app="np")
    svc = _service(node, ns, "np", app="np", type="NodePort")
    port = svc["spec"]["ports"][0]["nodePort"]
    node_ip = _node_ip(node)
    for url in (f"http://{node_ip}:{port}/cgi-bin/id", f"http://127.0.0.1:{port}/cgi-bin/id"):
        assert until_answers(lambda u=url: _get(u), url).split()[0] == "np-a"
    out = until_answers(lambda: _get(f"http://{node_ip}:{port}/cgi-bin/id", outside),
                         "the NodePort from outside")
    pod, client = out.split()
    assert pod == "np-a" and _addr(client) != "198.18.0.2"  # Cluster policy: masqueraded


def test_external_traffic_policy_local_keeps_the_client_address(node, ns, outside):
    _backend(node, ns, "local-a", app="local")
    svc = _service(node, ns, "local", app="local", type="NodePort", externalTrafficPolicy="Local")
    url = f"http://{_node_ip(node)}:{svc['spec']['ports'][0]['nodePort']}/cgi-bin/id"
    out = until_answers(lambda: _get(url, outside), "the NodePort from outside")
    pod, client = out.split()
    assert (pod, _addr(client)) == ("local-a", "198.18.0.2")


def test_load_balancer_address_answers(node, ns, outside):
    _backend(node, ns, "lb-a", app="lb")
    _service(node, ns, "lb", app="lb", type="LoadBalancer")

    def address():  # type: ignore[no-untyped-def]
        svc = json.loads(node.kubectl("get", "svc", "lb", "-n", ns, "-o", "json").stdout)
        ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        return ingress[0]["ip"] if ingress else None
    ip = wait_for(address, timeout=20, what="a LoadBalancer address")
    # Network safety: traffic for it stays on this machine once the node holds it.
    wait_for(lambda: "local" in subprocess.run(["ip", "route", "get", ip], capture_output=True,
                                               text=True).stdout.split()[:1],
             timeout=20, what=f"{ip} local on the node")
    assert until_answers(lambda: _get(f"http://{ip}/cgi-bin/id"), "the LB address").split()[0] == "lb-a"
    subprocess.run(["ip", "-n", outside, "route", "add", f"{ip}/32", "via", "198.18.0.1"], check=True)
    out = until_answers(lambda: _get(f"http://{ip}/cgi-bin/id", outside), "the LB address from outside")
    assert out.split()[0] == "lb-a"
    node.kubectl("delete", "svc", "lb", "-n", ns)
    wait_for(lambda: "local" not in subprocess.run(["ip", "route", "get", ip], capture_output=True,
                                                   text=True).stdout.split()[:1],
             timeout=20, what=f"{ip} released by the node")


def test_the_kubernetes_service_reaches_the_api_server_from_a_pod(node, ns):
    _client(node, ns)
    # nc exits 0 when the server closes the connection (a TLS server does,
    # given plain text); 1 when refused (no endpoints); timeout's 124 when
    # the packets go nowhere.
    out = until_answers(lambda: (lambda r: r if r.stdout.strip() == "0" else None)(node.kubectl(
        "exec", "client", "-n", ns, "--", "sh", "-c",
        "printf 'hello\\r\\n\\r\\n' | timeout 5 nc 10.96.0.1 443 >/dev/null; echo $?",
        check=False)), "the API server through 10.96.0.1")
    assert out.returncode == 0


def _agent_pid(node) -> int:  # type: ignore[no-untyped-def]
    out = subprocess.run(["pgrep", "-P", str(node.proc.pid), "-f", "pinnace.cli.main.* agent"],
                         capture_output=True, text=True)
    return int(out.stdout.split()[0])


def test_a_restarted_proxy_keeps_serving_and_drops_rules_it_no_longer_wants(node, ns):
    _backend(node, ns, "keep-a", app="keep")
    ip = _service(node, ns, "keep", app="keep")["spec"]["clusterIP"]
    until_answers(lambda: _get(f"http://{ip}/cgi-bin/id"), "the service")
    # What a previous run could have left: a service the API no longer has.
    subprocess.run(["nft", "add", "element", "ip", "pinnace-proxy", "service-ips",
                    "{ 10.96.255.254 . tcp . 80 : goto reject-chain }"], check=True)
    # Every Ready change of the backend from here on, as `kubectl get -w` sees them.
    env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
    watch = subprocess.Popen([KUBECTL, "get", "pod", "keep-a", "-n", ns, "-w", "-o",
                              'jsonpath={.status.conditions[?(@.type=="Ready")].status}{"\\n"}'],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    old = _agent_pid(node)
    subprocess.run(["kill", "-9", str(old)], check=True)
    # The rules stay in the kernel while no proxy runs: the service answers.
    assert _get(f"http://{ip}/cgi-bin/id").split()[0] == "keep-a"

    def restarted() -> bool:
        try:
            return _agent_pid(node) != old
        except IndexError:
            return False
    wait_for(restarted, timeout=30, what="the agent restarted by pinnace server")

    def reconciled() -> bool:
        table = subprocess.run(["nft", "list", "map", "ip", "pinnace-proxy", "service-ips"],
                               capture_output=True, text=True).stdout
        return "10.96.255.254" not in table and ip in table
    wait_for(reconciled, timeout=30, interval=0.3, what="the table rewritten by the new proxy")
    assert _get(f"http://{ip}/cgi-bin/id").split()[0] == "keep-a"
    # The restarted agent kept the pod ready while it probed again: the
    # service never lost its endpoint (upstream's kubelet flips it, #100277).
    time.sleep(3)
    watch.terminate()
    seen = watch.communicate(timeout=10)[0].split()
    assert seen and set(seen) == {"True"}, seen
