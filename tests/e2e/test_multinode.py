"""Two real nodes: the server's own agent, and a second agent joined with the
server's token from a network namespace that plays a second machine
(tests/e2e/cluster.py). The second node's proxy writes iptables rules (the
fallback where nftables is missing), the first node's nftables: every
service test here crosses both."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.e2e.cluster import (
    HOST_IP,
    NODE2,
    NODE_IP,
    NODE_NS,
    OUTSIDE_IP,
    OUTSIDE_NS,
    outside_get,
    second_node,
)
from tests.e2e.conftest import phase, until_answers, wait_pod

IMAGE = "busybox:1.36"
SERVE = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
         "echo $(hostname) $REMOTE_ADDR\\n' > /www/cgi-bin/id && chmod +x /www/cgi-bin/id && "
         "exec httpd -f -p 8080 -h /www")


@pytest.fixture(scope="module")
def two_nodes(node: Server, busybox_archive: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Server]:
    with second_node(node, tmp_path_factory.mktemp("node2"), [busybox_archive],
                     proxy_mode="iptables"):
        yield node


def _apply(node, ns, obj) -> None:  # type: ignore[no-untyped-def]
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _pod(node, ns, name: str, on: str, app: str = "", serve: bool = False) -> dict:  # type: ignore[no-untyped-def]
    cmd = ["sh", "-c", SERVE] if serve else ["sleep", "3600"]
    _apply(node, ns, {"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": name, "labels": {"app": app} if app else {}},
                      "spec": {"terminationGracePeriodSeconds": 0,
                               "nodeSelector": {"kubernetes.io/hostname": on},
                               "containers": [{"name": "c", "image": IMAGE, "command": cmd}]}})
    return wait_pod(node, ns, name, lambda p: phase(p) == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])),
        timeout=90, what=f"{name} Running on {on}")


def _first_node(node) -> str:  # type: ignore[no-untyped-def]
    names = [n["metadata"]["name"] for n in
             json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"]]
    return next(n for n in names if n != NODE2)


def test_the_joined_node_has_its_own_identity(two_nodes):
    csrs = json.loads(two_nodes.kubectl("get", "csr", "-o", "json").stdout)["items"]
    mine = [c for c in csrs if c["spec"].get("username", "").startswith("system:bootstrap:")]
    assert mine and all(any(cond["type"] == "Approved" for cond in c["status"]["conditions"])
                        for c in mine)
    node2 = json.loads(two_nodes.kubectl("get", "node", NODE2, "-o", "json").stdout)
    assert {"type": "InternalIP", "address": NODE_IP} in node2["status"]["addresses"]
    assert node2["spec"]["podCIDR"]


def test_pods_on_two_nodes_reach_each_other_by_ip_by_service_and_by_name(two_nodes, ns):
    node = two_nodes
    first = _first_node(node)
    a = _pod(node, ns, "web-a", first, app="web", serve=True)
    b = _pod(node, ns, "web-b", NODE2, app="web", serve=True)
    assert a["status"]["podIP"].rsplit(".", 1)[0] != b["status"]["podIP"].rsplit(".", 1)[0]
    _pod(node, ns, "client", NODE2)

    def get(url: str) -> str:
        out = node.kubectl("exec", "client", "-n", ns, "--", "timeout", "5", "wget", "-q", "-O", "-",
                           url, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    # Across nodes by pod IP (host-gw routes), client address kept.
    pod_ip, client_ip = a["status"]["podIP"], None
    answer = until_answers(lambda: get(f"http://{pod_ip}:8080/cgi-bin/id"), "web-a from node2 by pod IP",
                           timeout=30, interval=0.5)
    client_ip = json.loads(node.kubectl("get", "pod", "client", "-n", ns, "-o", "json").stdout
                           )["status"]["podIP"]
    assert answer.split()[0] == "web-a" and answer.split()[1].strip("[]").endswith(client_ip)
    _apply(node, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                      "spec": {"type": "NodePort", "selector": {"app": "web"},
                               "ports": [{"port": 80, "targetPort": 8080}]}})
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while seen != {"web-a", "web-b"} and time.monotonic() < deadline:
        try:
            seen.add(get("http://web/cgi-bin/id").split()[0])   # by name: cluster DNS
        except AssertionError:
            time.sleep(0.5)
    assert seen == {"web-a", "web-b"}

    # From outside the cluster, the NodePort of either node reaches both pods.
    svc = json.loads(node.kubectl("get", "svc", "web", "-n", ns, "-o", "json").stdout)
    port = svc["spec"]["ports"][0]["nodePort"]
    for node_ip in (HOST_IP, NODE_IP):
        got: set[str] = set()
        deadline = time.monotonic() + 30
        while got != {"web-a", "web-b"} and time.monotonic() < deadline:
            try:
                got.add(outside_get(f"http://{node_ip}:{port}/cgi-bin/id").split()[0])
            except AssertionError:
                time.sleep(0.5)
        assert got == {"web-a", "web-b"}, (node_ip, got)


def test_external_traffic_policy_local_on_the_second_node(two_nodes, ns):
    node = two_nodes
    _pod(node, ns, "local-b", NODE2, app="local", serve=True)
    _apply(node, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "local"},
                      "spec": {"type": "NodePort", "externalTrafficPolicy": "Local",
                               "selector": {"app": "local"},
                               "ports": [{"port": 80, "targetPort": 8080}]}})
    svc = json.loads(node.kubectl("get", "svc", "local", "-n", ns, "-o", "json").stdout)
    port = svc["spec"]["ports"][0]["nodePort"]
    out = until_answers(lambda: outside_get(f"http://{NODE_IP}:{port}/cgi-bin/id"), "the NodePort on node2",
                        timeout=30, interval=0.5)
    pod, client = out.split()
    assert pod == "local-b" and client.strip("[]").removeprefix("::ffff:") == OUTSIDE_IP
    # The first node has no local endpoint: it drops, it does not forward.
    first_try = subprocess.run(["ip", "netns", "exec", OUTSIDE_NS, "python3", "-c",
                                "import socket; s = socket.socket(); s.settimeout(2); "
                                f"s.connect(('{HOST_IP}', {port}))"], capture_output=True, text=True)
    assert first_try.returncode != 0 and "timed out" in first_try.stderr


def test_the_second_node_s_iptables_proxy_refuses_a_service_without_endpoints(two_nodes, ns):
    node = two_nodes
    _pod(node, ns, "lonely", NODE2)
    _apply(node, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody"},
                      "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}})
    ip = json.loads(node.kubectl("get", "svc", "nobody", "-n", ns, "-o", "json").stdout
                    )["spec"]["clusterIP"]

    def saved() -> str:
        return subprocess.run(["ip", "netns", "exec", NODE_NS, "iptables-save"],
                              capture_output=True, text=True, check=True).stdout
    until_answers(lambda: saved() if f"-d {ip}/32" in saved() else None,
                  "node2's iptables rules for the service", timeout=30, interval=0.5)
    assert "PINNACE-SERVICES" in saved()
    # The nftables table is not there: node2 uses iptables only.
    tables = subprocess.run(["ip", "netns", "exec", NODE_NS, "nft", "list", "tables"],
                            capture_output=True, text=True).stdout
    assert "pinnace-proxy" not in tables
    # Refused at once (ICMP), not left to time out.
    out = node.kubectl("exec", "lonely", "-n", ns, "--", "timeout", "5", "wget", "-q", "-O", "-",
                       f"http://{ip}/", check=False)
    assert out.returncode != 0 and "refused" in out.stderr, out.stderr
