"""metrics.k8s.io served by the API server (pinnace.apiserver.metricsapi),
through the real kubectl, on an API server alone (pods name their nodes; no
scheduler):  `kubectl top nodes|pods` for simulated nodes
(made-up, deterministic usage) and for a node whose kubelet serves a
fixed /stats/summary, discovery (`kubectl api-resources`), and the raw
NodeMetrics/PodMetrics objects in metrics-server's format.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.client import Client, load_kubeconfig
from pinnace.kubelet.server import KubeletServer
from pinnace.kubelet.sim import SimNodes, node_names
from tests.conftest import Server, wait_for

GV = "/apis/metrics.k8s.io/v1beta1"
CPU = re.compile(r"^(0|\d+[num]?)$")
MEMORY = re.compile(r"^(0|\d+(Ki|Mi|Gi)?)$")


class SimThread:
    """SimNodes in a thread of their own, so kubectl calls never stall them."""

    def __init__(self, server: Server, names: list[str], **kw: Any):
        self.names = names
        self.sim: SimNodes | None = None
        self._task: asyncio.Task[None] | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.done = asyncio.run_coroutine_threadsafe(self._run(server, kw), self.loop)
        wait_for(lambda: (self.sim is not None and self.sim.ready.is_set()) or self.done.done(),
                 60, what="simulated nodes ready")
        if self.done.done():
            self.done.result()  # it failed: say why

    async def _run(self, server: Server, kw: dict[str, Any]) -> None:
        self._task = asyncio.current_task()  # type: ignore[assignment]
        async with Client(load_kubeconfig(server.kubeconfig)) as client:
            self.sim = SimNodes(client, self.names, **kw)
            await self.sim.run()

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        wait_for(self.done.done, 20, what="simulator stopped")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def sims(server: Server) -> Iterator[Any]:
    """Simulated nodes, removed afterwards (a scheduler sharing the server
    must not find them)."""
    started: list[SimThread] = []

    def start(names: list[str], **kw: Any) -> SimThread:
        kw.setdefault("renew_interval", 0.5)
        s = SimThread(server, names, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
        server.kubectl("delete", "node", *s.names, "--wait=false", check=False)


def _apply(server: Server, obj: dict[str, Any]) -> None:
    server.kubectl("apply", "-f", "-", input=json.dumps(obj))


def _pod(server: Server, ns: str, name: str, node: str, containers: list[dict[str, Any]],
         annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> None:
    _apply(server, {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns, "annotations": annotations or {},
                                 "labels": labels or {}},
                    "spec": {"nodeName": node, "containers": containers}})


def _running(server: Server, ns: str) -> bool:
    pods = json.loads(server.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    return bool(pods) and all(p["status"].get("phase") == "Running" for p in pods)


def _raw(server: Server, path: str) -> Any:
    return json.loads(server.kubectl("get", "--raw", path).stdout)


def _rows(out: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = out.strip().splitlines()
    return lines[0].split(), {ln.split()[0]: ln.split() for ln in lines[1:]}


@pytest.fixture
def sim_pods(server: Server, namespace: str, sims: Any) -> tuple[str, list[str]]:
    ns = namespace
    names = node_names(2, f"{ns}-n")
    sims(names, labels={"metrics-test": ns})
    c = {"name": "app", "image": "nginx:1.27"}
    _pod(server, ns, "fixed", names[0], [c], annotations={"pinnace.dev/sim-usage":
                                                            "cpu=250m,memory=64Mi"},
         labels={"tier": "web"})
    _pod(server, ns, "two", names[0], [
        {**c, "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
        {"name": "side", "image": "busybox", "resources": {"limits": {"cpu": "1",
                                                                      "memory": "1Gi"}}}],
         labels={"tier": "db"})
    _pod(server, ns, "plain", names[1], [c])
    wait_for(lambda: _running(server, ns), 30, what="pods running")
    server.kubectl("annotate", "node", names[1], "pinnace.dev/sim-usage=cpu=2,memory=8Gi")
    return ns, names


def test_discovery(server: Server) -> None:
    out = server.kubectl("api-resources", "--api-group=metrics.k8s.io").stdout
    header, rows = _rows(out)
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert rows["nodes"][1:] == ["metrics.k8s.io/v1beta1", "false", "NodeMetrics"]
    assert rows["pods"][1:] == ["metrics.k8s.io/v1beta1", "true", "PodMetrics"]
    assert "deployments" in server.kubectl("api-resources").stdout  # the rest is still there
    groups = _raw(server, "/apis")["groups"]
    assert {"name": "metrics.k8s.io",
            "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
            "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1",
                                 "version": "v1beta1"}} in groups
    assert _raw(server, "/apis/metrics.k8s.io")["kind"] == "APIGroup"
    res = _raw(server, GV)
    assert res["kind"] == "APIResourceList"
    assert [(r["name"], r["kind"], r["verbs"]) for r in res["resources"]] == [
        ("nodes", "NodeMetrics", ["get", "list"]), ("pods", "PodMetrics", ["get", "list"])]


def test_top_nodes_on_sim_nodes(server: Server, sim_pods: tuple[str, list[str]]) -> None:
    ns, names = sim_pods
    out = server.kubectl("top", "nodes", "-l", f"metrics-test={ns}").stdout
    header, rows = _rows(out)
    assert header[:5] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert set(rows) == set(names)
    # Made up: 100m and 512Mi for the node itself, plus its pods.
    cpu0 = int(rows[names[0]][1].rstrip("m"))
    assert cpu0 > 100 + 250 and rows[names[0]][3].endswith("Mi")
    assert int(rows[names[0]][3].rstrip("Mi")) > 512 + 64
    # The annotation sets a node's usage outright: 2 of 32 cores, 8Gi of 256Gi.
    assert rows[names[1]][1:5] == ["2000m", "6%", "8192Mi", "3%"]
    one = server.kubectl("top", "node", names[1]).stdout
    assert _rows(one)[1][names[1]][1] == "2000m"

    lst = _raw(server, f"{GV}/nodes?labelSelector=metrics-test%3D{ns}")
    assert lst["kind"] == "NodeMetricsList" and lst["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert lst["metadata"] == {} and [i["metadata"]["name"] for i in lst["items"]] == sorted(names)
    nm = _raw(server, f"{GV}/nodes/{names[1]}")
    assert nm["kind"] == "NodeMetrics" and nm["window"] == "10s"
    assert nm["usage"] == {"cpu": "2", "memory": "8Gi"}
    assert nm["metadata"]["labels"]["metrics-test"] == ns
    assert set(nm["metadata"]) == {"name", "creationTimestamp", "labels"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", nm["timestamp"])
    for item in lst["items"]:
        assert CPU.match(item["usage"]["cpu"]) and MEMORY.match(item["usage"]["memory"]), item

    gone = server.kubectl("top", "node", f"{ns}-nope", check=False)
    assert gone.returncode != 0 and f'node "{ns}-nope" not found' in gone.stderr


def test_top_pods_on_sim_nodes(server: Server, sim_pods: tuple[str, list[str]]) -> None:
    ns, names = sim_pods
    header, rows = _rows(server.kubectl("top", "pods", "-n", ns).stdout)
    assert header == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert set(rows) == {"fixed", "two", "plain"}
    assert rows["fixed"][1:] == ["250m", "64Mi"]
    for name in ("two", "plain"):
        assert rows[name][1] != "0m" and rows[name][2] != "0Mi"
    # Half of 200m + half of the 1-core limit, each within 25%.
    assert 450 <= int(rows["two"][1].rstrip("m")) <= 750

    header, rows2 = _rows(server.kubectl("top", "pods", "-n", ns, "--containers").stdout)
    assert header == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    lines = server.kubectl("top", "pods", "-n", ns, "--containers").stdout.splitlines()[1:]
    assert sorted((ln.split()[0], ln.split()[1]) for ln in lines) == [
        ("fixed", "app"), ("plain", "app"), ("two", "app"), ("two", "side")]

    out = server.kubectl("top", "pods", "-A").stdout
    assert any(ln.split()[:2] == [ns, "fixed"] for ln in out.splitlines())
    header, rows = _rows(server.kubectl("top", "pods", "-n", ns, "-l", "tier=web").stdout)
    assert set(rows) == {"fixed"}
    header, rows = _rows(server.kubectl("top", "pod", "two", "-n", ns).stdout)
    assert set(rows) == {"two"}

    pm = _raw(server, f"{GV}/namespaces/{ns}/pods/fixed")
    assert pm["kind"] == "PodMetrics" and pm["window"] == "10s"
    assert pm["metadata"]["namespace"] == ns and pm["metadata"]["labels"] == {"tier": "web"}
    assert pm["containers"] == [{"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}}]
    every = _raw(server, f"{GV}/pods?fieldSelector=metadata.namespace%3D{ns}")
    assert every["kind"] == "PodMetricsList"
    assert [i["metadata"]["name"] for i in every["items"]] == ["fixed", "plain", "two"]

    # A pod that is not Running has no metrics; one that does not exist is not found.
    _apply(server, {"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "waiting", "namespace": ns},
                     "spec": {"nodeName": f"{ns}-nowhere",
                              "containers": [{"name": "c", "image": "busybox"}]}})
    r = server.kubectl("top", "pod", "waiting", "-n", ns, check=False)
    assert r.returncode != 0 and f'podmetrics.metrics.k8s.io "{ns}/waiting" not found' in r.stderr
    r = server.kubectl("top", "pod", "nope", "-n", ns, check=False)
    assert r.returncode != 0 and 'pod "nope" not found' in r.stderr

    table = server.kubectl("get", "pods.metrics.k8s.io", "-n", ns).stdout
    header, rows = _rows(table)
    assert header == ["NAME", "CPU", "MEMORY", "WINDOW"]
    assert rows["fixed"][1:] == ["250m", "64Mi", "10s"]


# -- a node with a kubelet ------------------------------------------------------------

SUMMARY: dict[str, Any] = {
    "node": {"nodeName": "x", "cpu": {"time": "2027-01-15T08:00:00Z",
                                      "usageNanoCores": 1_500_000_000,
                                      "usageCoreNanoSeconds": 10**12},
             "memory": {"time": "2027-01-15T08:00:00Z", "workingSetBytes": 2 << 30}},
    "pods": [{"podRef": {"name": "p", "namespace": "NS", "uid": "UID"},
              "containers": [{"name": "c",
                              "cpu": {"time": "2027-01-15T08:00:00Z",
                                      "usageNanoCores": 123_456_789},
                              "memory": {"time": "2027-01-15T08:00:00Z",
                                         "workingSetBytes": 50 << 20}}]}],
}


class SummaryRuntime:
    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.calls = 0

    def stats_summary(self) -> dict[str, Any]:
        self.calls += 1
        return self.summary


class KubeletThread:
    def __init__(self, server: Server, runtime: SummaryRuntime, tls_dir: Path):
        self.loop = asyncio.new_event_loop()
        self.kubelet = KubeletServer(runtime, host="127.0.0.1", port=0,  # type: ignore[arg-type]
                                     tls_dir=tls_dir, node_name="metrics-node",
                                     client_ca=server.data_dir / "tls" / "ca.crt")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.kubelet.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.kubelet.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _node(server: Server, name: str, port: int) -> None:
    http = server.http()
    code, body = http.call("POST", "/api/v1/nodes", {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    assert code == 201, body
    body["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                      "capacity": {"cpu": "4", "memory": "8Gi"},
                      "allocatable": {"cpu": "4", "memory": "8Gi"},
                      "nodeInfo": {"containerRuntimeVersion": "fake://1"}}
    code, body = http.call("PUT", f"/api/v1/nodes/{name}/status", body)
    assert code == 200, body


def _running_pod(server: Server, ns: str, name: str, node: str) -> str:
    http = server.http()
    code, body = http.call("POST", f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    assert code == 201, body
    body["status"] = {"phase": "Running"}
    code, body = http.call("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", body)
    assert code == 200, body
    return str(body["metadata"]["uid"])


def test_top_reads_the_kubelet_summary(server: Server, namespace: str, tmp_path: Path) -> None:
    runtime = SummaryRuntime()
    kubelet = KubeletThread(server, runtime, tmp_path / "tls")
    try:
        node = f"kl-{namespace}"[:60]
        _node(server, node, kubelet.kubelet.port)
        uid = _running_pod(server, namespace, "p", node)
        _running_pod(server, namespace, "unknown-to-kubelet", node)
        summary = json.loads(json.dumps(SUMMARY).replace('"NS"', json.dumps(namespace))
                             .replace('"UID"', json.dumps(uid)))
        runtime.summary = summary

        header, rows = _rows(server.kubectl("top", "node", node).stdout)
        assert rows[node][1:5] == ["1500m", "37%", "2048Mi", "25%"]
        nm = _raw(server, f"{GV}/nodes/{node}")
        assert nm["usage"] == {"cpu": "1500m", "memory": "2Gi"}
        assert nm["timestamp"] == "2027-01-15T08:00:00Z"

        header, rows = _rows(server.kubectl("top", "pods", "-n", namespace).stdout)
        assert rows == {"p": ["p", "124m", "50Mi"]}
        pm = _raw(server, f"{GV}/namespaces/{namespace}/pods/p")
        assert pm["containers"] == [{"name": "c", "usage": {"cpu": "123456789n",
                                                            "memory": "50Mi"}}]
        # One fetch per node serves requests for CACHE_SECONDS.
        assert runtime.calls == 1
    finally:
        kubelet.stop()

    # A node whose kubelet does not answer is left out (after its cache entry expires).
    down = f"down-{namespace}"[:60]
    _node(server, down, 1)
    r = server.kubectl("top", "node", down, check=False)
    assert r.returncode != 0 and f'nodemetrics.metrics.k8s.io "{down}" not found' in r.stderr
