"""The classic example, for real, on two nodes: MariaDB as `mysql` (an RC with
one replica) and the myweb app (two replicas) behind NodePort 30001, used
from a client namespace outside the cluster, then scaled, upgraded (RC and
Deployment) with the service answering throughout, exposed as a
LoadBalancer, and healed when the node running mysql goes away.

This module runs its own `pinnace server` (with failure detection in
seconds, not minutes) and its own second node, before any test uses the
shared node: tests/e2e/conftest.py orders it first after the benchmark.
The images come from examples/classic/build-images.sh (Debian packages,
cached outside the repo). The tests run in order, each building on the last.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Server, _free_port, start_server, wait_for
from tests.e2e.cluster import (
    HOST_IP,
    NODE2,
    NODE_IP,
    NODE_NS,
    OUTSIDE_NS,
    SecondNode,
    outside_get,
    second_node,
)
from tests.e2e.conftest import REPO, guard_routes, pinnace, require_node

EXAMPLE = REPO / "examples" / "classic"


@dataclass
class Cluster:
    server: Server
    node2: SecondNode
    first: str                      # the server's own node
    state: dict = field(default_factory=dict)

    def k(self, *args: str, check: bool = True, input: str | None = None
          ) -> subprocess.CompletedProcess[str]:
        return self.server.kubectl(*args, check=check, input=input)

    def pods(self, app: str) -> list[dict]:
        items = json.loads(self.k("get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready(self, app: str) -> list[dict]:
        return [p for p in self.pods(app) if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", []))]


@pytest.fixture(scope="module")
def images() -> list[Path]:
    require_node()
    out = subprocess.run(["bash", str(EXAMPLE / "build-images.sh")], capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    return [Path(line) for line in out.stdout.split()]


@pytest.fixture(scope="module")
def cluster(images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("classic")
    for archive in images:
        pinnace("image", "import", "--data-dir", str(data), str(archive), timeout=600)
    srv = start_server(data, "--kubelet-port", str(_free_port()), "--listen", "0.0.0.0:0",
                       # A dead node noticed in ~20 s and its pods moved 5 s later (the
                       # Lease is renewed every 10 s, so no less than that).
                       "--node-monitor-grace-period", "20", "--node-monitor-period", "2",
                       "--default-unreachable-toleration-seconds", "5",
                       "--default-not-ready-toleration-seconds", "5",
                       command="server", agent=True, timeout=60)
    try:
        wait_for(lambda: " Ready " in srv.kubectl("get", "nodes", check=False).stdout,
                 timeout=60, what="the first node Ready")
        assert all(guard_routes().values())
        first = json.loads(srv.kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
        with second_node(srv, tmp_path_factory.mktemp("classic-node2"), images) as node2:
            yield Cluster(srv, node2, first["metadata"]["name"])
    finally:
        srv.stop()
        pinnace("agent", "--reset", "--data-dir", str(data), check=False)


class Poller:
    """Asks myweb through a NodePort from outside, again and again, counting
    what fails: the service must answer throughout an upgrade."""

    def __init__(self, url: str):
        self.url, self.ok, self.failures, self.versions = url, 0, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.versions.add(json.loads(outside_get(self.url))["version"])
                self.ok += 1
            except (AssertionError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
                self.failures.append(str(e)[-200:])
            time.sleep(0.1)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _records(ip: str) -> dict:
    return json.loads(outside_get(f"http://{ip}:30001/records"))


def test_1_the_example_runs_and_answers_from_outside_on_both_nodes(cluster):
    c = cluster
    # mysql on the second node, so that node can be the one that dies below.
    c.k("cordon", c.first)
    c.k("apply", "-f", str(EXAMPLE / "mysql-svc.yaml"), "-f", str(EXAMPLE / "mysql-rc.yaml"))
    mysql = wait_for(lambda: (p := c.ready("mysql")) and p[0], timeout=180, interval=1,
                     what="mysql Ready (MariaDB's first start initialises its datadir)")
    assert mysql["spec"]["nodeName"] == NODE2
    c.k("uncordon", c.first)
    c.k("apply", "-f", str(EXAMPLE / "myweb-svc.yaml"), "-f", str(EXAMPLE / "myweb-rc.yaml"))
    web = wait_for(lambda: (p := c.ready("myweb")) and len(p) == 2 and p, timeout=120,
                   interval=1, what="two myweb pods Ready")
    assert {p["spec"]["nodeName"] for p in web} == {c.first, NODE2}   # spread over the nodes
    env = c.k("exec", web[0]["metadata"]["name"], "--", "env").stdout
    assert "MYSQL_SERVICE_HOST=" in env          # the service was there first

    # A record written through one node is read through the other, and
    # requests spread over both replicas.
    outside_get(f"http://{HOST_IP}:30001/records", data="name=alpha")
    served = set()
    for _ in range(20):
        got = _records(NODE_IP)
        assert "alpha" in json.dumps(got["records"])
        served.add(got["served_by"])
    assert served == {p["metadata"]["name"] for p in web}, served


def test_2_scale_up_and_back(cluster):
    c = cluster
    c.k("scale", "rc", "myweb", "--replicas=3")
    wait_for(lambda: len(c.ready("myweb")) == 3, timeout=90, interval=1, what="3 myweb Ready")
    c.k("scale", "rc", "myweb", "--replicas=2")
    wait_for(lambda: len(c.pods("myweb")) == 2, timeout=60, interval=1, what="back to 2 myweb")


def test_3_upgrade_the_rc_pod_by_pod_while_it_answers(cluster):
    c = cluster
    c.k("set", "image", "rc/myweb", "myweb=pinnace-example/myweb:v2")
    def v2_ready() -> int:
        return len([p for p in c.ready("myweb") if p["spec"]["containers"][0]["image"].endswith(":v2")])
    with Poller(f"http://{HOST_IP}:30001/records") as poll:
        for old in [p["metadata"]["name"] for p in c.pods("myweb")]:
            before = v2_ready()
            c.k("delete", "pod", old, "--wait=false")
            wait_for(lambda n=before: v2_ready() > n, timeout=90, interval=0.5,
                     what=f"a v2 pod Ready in place of {old}")
        wait_for(lambda: len([p for p in c.ready("myweb")
                              if p["spec"]["containers"][0]["image"].endswith(":v2")]) == 2,
                 timeout=90, interval=0.5, what="two v2 pods Ready")
        time.sleep(1)
    assert _records(NODE_IP)["version"] == "v2"
    assert poll.ok > 10 and not poll.failures, poll.failures[:5]


def test_4_a_deployment_rolls_out_v1_to_v2_while_it_answers(cluster):
    c = cluster
    c.k("delete", "rc", "myweb", "--cascade=orphan")
    c.k("apply", "-f", str(EXAMPLE / "upgrade" / "myweb-deployment.yaml"))
    c.k("rollout", "status", "deployment/myweb", "--timeout=120s")
    # The RC's pods, orphaned, served until the Deployment's were ready.
    for p in c.pods("myweb"):
        if not p["metadata"].get("ownerReferences"):
            c.k("delete", "pod", p["metadata"]["name"], "--wait=false")
    wait_for(lambda: len(c.ready("myweb")) == 2 and all(
        p["metadata"].get("ownerReferences") for p in c.pods("myweb")), timeout=60, interval=0.5,
        what="only the Deployment's pods")
    with Poller(f"http://{NODE_IP}:30001/records") as poll:
        c.k("set", "image", "deployment/myweb", "myweb=pinnace-example/myweb:v2")
        c.k("rollout", "status", "deployment/myweb", "--timeout=180s")
        time.sleep(1)
    assert poll.versions == {"v1", "v2"} and not poll.failures, (poll.versions, poll.failures[:5])


def test_5_as_a_load_balancer_it_gets_an_address_that_answers(cluster):
    c = cluster
    c.k("patch", "svc", "myweb", "-p", '{"spec": {"type": "LoadBalancer"}}')

    def address():  # type: ignore[no-untyped-def]
        svc = json.loads(c.k("get", "svc", "myweb", "-o", "json").stdout)
        ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        return ingress[0]["ip"] if ingress else None
    ip = wait_for(address, timeout=30, what="a LoadBalancer address")
    # One node, elected, holds the address and answers ARP for it on the
    # nodes' network, where the client finds it (it has no other route).
    def held() -> bool:
        here = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout
        there = subprocess.run(["ip", "-n", NODE_NS, "route", "get", ip], capture_output=True,
                               text=True).stdout
        return (here.split()[:1] == ["local"]) != (there.split()[:1] == ["local"])
    wait_for(held, timeout=20, what=f"{ip} held by exactly one node")
    subprocess.run(["ip", "-n", OUTSIDE_NS, "route", "replace", f"{ip}/32", "dev", "eth0"],
                   check=True)
    got = wait_for(lambda: (lambda r: r)(json.loads(outside_get(f"http://{ip}:8080/records"))),
                   timeout=30, what="myweb at its LoadBalancer address")
    assert got["version"] == "v2"
    assert f"{ip}" in c.k("get", "svc", "myweb").stdout


def test_6_the_node_running_mysql_dies_and_the_example_heals(cluster):
    c = cluster
    assert c.ready("mysql")[0]["spec"]["nodeName"] == NODE2
    c.node2.stop()          # the machine goes away, containers and all
    wait_for(lambda: any(cond["type"] == "Ready" and cond["status"] != "True" for cond in json.loads(
        c.k("get", "node", NODE2, "-o", "json").stdout)["status"]["conditions"]),
        timeout=60, interval=1, what="node2 NotReady")
    mysql = wait_for(lambda: (p := c.ready("mysql")) and p[0]["spec"]["nodeName"] == c.first
                     and p[0], timeout=240, interval=1, what="mysql again, on the first node")
    assert mysql["metadata"]["name"]
    wait_for(lambda: len([p for p in c.ready("myweb") if p["spec"]["nodeName"] == c.first]) == 2,
             timeout=180, interval=1, what="both myweb pods Ready on the first node")
    # The data lived in the dead node's container: the table starts empty,
    # and the app, reconnected, stores again.
    outside_get(f"http://{HOST_IP}:30001/records", data="name=after")
    names = json.dumps(_records(HOST_IP)["records"])
    assert "after" in names and "alpha" not in names
