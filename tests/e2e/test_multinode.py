"""Two real nodes: the server's own agent, and a second agent joined with the
server's token from a network namespace that plays a second machine.

Layout (all made here, all removed afterwards, pass or fail):

  host ── pn-test0 bridge 198.18.1.1/24 ─┬─ pinnace-node2  198.18.1.2 (eth0)
                                         └─ pinnace-outside 198.18.1.3 (a client, not a node)

198.18.0.0/15 is the benchmarking range: nothing outside this machine
answers it. The second agent runs with only its network namespace changed
(nsenter --net), so its mounts and cgroups are the host's, as a second
machine's would be its own. Before it gets any cluster address its agent
routes the pod and service ranges to a guard device, which the test checks
before starting a pod there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, _free_port, wait_for
from tests.e2e.conftest import phase, pinnace, wait_pod

BRIDGE = "pn-test0"
NODE_NS, NODE_IP = "pinnace-node2", "198.18.1.2"
OUTSIDE_NS, OUTSIDE_IP = "pinnace-outside", "198.18.1.3"
HOST_IP = "198.18.1.1"
NODE2 = "node2"
IMAGE = "busybox:1.36"
SERVE = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
         "echo $(hostname) $REMOTE_ADDR\\n' > /www/cgi-bin/id && chmod +x /www/cgi-bin/id && "
         "exec httpd -f -p 8080 -h /www")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _remove_topology() -> None:
    for ns in (NODE_NS, OUTSIDE_NS):
        _ip("netns", "del", ns, check=False)
    for link in (BRIDGE, "pn-n2", "pn-out"):
        _ip("link", "del", link, check=False)


def _host(ns: str, veth: str, ip: str) -> None:
    _ip("netns", "add", ns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", veth, "master", BRIDGE, "up")
    _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")


def _guard_in(ns: str) -> dict[str, str]:
    out = {}
    for cidr in ("10.244.0.0/16", "10.96.0.0/12"):
        routes = json.loads(_ip("-n", ns, "-j", "route", "show", cidr).stdout or "[]")
        out[cidr] = routes[0].get("dev", "") if routes else ""
    return out


@pytest.fixture(scope="module")
def two_nodes(node: Server, busybox_archive: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("node2")
    pinnace("image", "import", "--data-dir", str(data), str(busybox_archive))
    _remove_topology()
    agent: subprocess.Popen[bytes] | None = None
    log = data / "agent.log"
    try:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        _host(NODE_NS, "pn-n2", NODE_IP)
        # The second machine reaches the first (and its API at 192.0.2.x) through it.
        _ip("-n", NODE_NS, "route", "add", "default", "via", HOST_IP)
        _host(OUTSIDE_NS, "pn-out", OUTSIDE_IP)
        # The address the server's certificate names (the first node's), which
        # the second machine reaches through its default route.
        port = node.url.rsplit(":", 1)[1]
        first = json.loads(node.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
        server_ip = next(a["address"] for a in first["status"]["addresses"]
                         if a["type"] == "InternalIP")
        with log.open("wb") as out:
            agent = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{NODE_NS}", sys.executable, "-m", "pinnace.cli.main",
                 "agent", "--server", f"https://{server_ip}:{port}",
                 "--token-file", str(node.data_dir / "node-token"), "--data-dir", str(data),
                 "--node-name", NODE2, "--node-ip", NODE_IP, "--kubelet-port", str(_free_port())],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            assert agent is not None and agent.poll() is None, log.read_text()[-3000:]
            out = node.kubectl("get", "node", NODE2, "-o", "json", check=False)
            return out.returncode == 0 and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in json.loads(out.stdout)["status"].get("conditions", []))
        wait_for(ready, timeout=90, interval=0.5, what="node2 to join and be Ready")
        # The network safety rule, in the second machine too.
        assert all(_guard_in(NODE_NS).values()), _guard_in(NODE_NS)
        yield node
    finally:
        if agent is not None and agent.poll() is None:
            os.killpg(agent.pid, signal.SIGTERM)
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()
        subprocess.run(["nsenter", f"--net=/run/netns/{NODE_NS}", sys.executable, "-m",
                        "pinnace.cli.main", "agent", "--reset", "--data-dir", str(data)],
                       capture_output=True, timeout=120)
        node.kubectl("delete", "node", NODE2, "--wait=false", check=False)
        _remove_topology()
        assert _ip("link", "show", BRIDGE, check=False).returncode != 0
        assert NODE_NS not in _ip("netns", "list").stdout


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


def _outside_get(url: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", OUTSIDE_NS, "python3", "-c",
                          "import sys, urllib.request; print(urllib.request.urlopen("
                          "sys.argv[1], timeout=5).read().decode().strip())", url],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr[-500:]
    return out.stdout.strip()


def _until(fn, what: str):  # type: ignore[no-untyped-def]
    def attempt():  # type: ignore[no-untyped-def]
        try:
            return fn()
        except (AssertionError, OSError):
            return None
    return wait_for(attempt, timeout=30, interval=0.5, what=what)


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
    answer = _until(lambda: get(f"http://{pod_ip}:8080/cgi-bin/id"), "web-a from node2 by pod IP")
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
                got.add(_outside_get(f"http://{node_ip}:{port}/cgi-bin/id").split()[0])
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
    out = _until(lambda: _outside_get(f"http://{NODE_IP}:{port}/cgi-bin/id"), "the NodePort on node2")
    pod, client = out.split()
    assert pod == "local-b" and client.strip("[]").removeprefix("::ffff:") == OUTSIDE_IP
    # The first node has no local endpoint: it drops, it does not forward.
    first_try = subprocess.run(["ip", "netns", "exec", OUTSIDE_NS, "python3", "-c",
                                "import socket; s = socket.socket(); s.settimeout(2); "
                                f"s.connect(('{HOST_IP}', {port}))"], capture_output=True, text=True)
    assert first_try.returncode != 0 and "timed out" in first_try.stderr
