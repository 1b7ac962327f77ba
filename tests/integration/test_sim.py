"""Simulated nodes (`pinnace sim`) against a real API server, seen through
kubectl: nodes register Ready and heartbeat through Leases, pods bound to
them run with an IP, deletion completes, and a stopped node goes quiet.

No scheduler runs here, so the tests bind pods themselves (pods/binding).
The simulator runs in its own thread and event loop, so the synchronous
kubectl calls of the test never stall it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pinnace.client import Client, load_kubeconfig
from pinnace.kubelet.sim import SimNodes, node_names
from tests.conftest import Server, wait_for


class SimThread:
    """SimNodes running in a background thread against ``server``."""

    def __init__(self, server: Server, names: list[str], **kw: Any):
        self.server = server
        self.names = names
        self.kw = kw
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.sim: SimNodes | None = None
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(60):
            raise AssertionError(f"simulator did not get ready: {self.error!r}")

    def _run(self) -> None:
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        client = Client(load_kubeconfig(self.server.kubeconfig))
        self.sim = SimNodes(client, self.names, **self.kw)
        self._task = asyncio.create_task(self.sim.run())
        waiter = asyncio.create_task(self.sim.ready.wait())
        await asyncio.wait([self._task, waiter], return_when=asyncio.FIRST_COMPLETED)
        self.ready.set()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # surfaced by the test
            self.error = e
        finally:
            waiter.cancel()
            await client.close()

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        self.thread.join(20)


@pytest.fixture
def sims(server: Server) -> Iterator[Any]:
    started: list[SimThread] = []

    def start(names: list[str], **kw: Any) -> SimThread:
        kw.setdefault("renew_interval", 0.5)
        s = SimThread(server, names, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _get(server: Server, *args: str) -> Any:
    return json.loads(server.kubectl("get", *args, "-o", "json").stdout)


def _pod(server: Server, ns: str, name: str, node: str, **spec: Any) -> None:
    ann = spec.pop("annotations", None)
    manifest = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, **({"annotations": ann} if ann else {})},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec}}
    server.kubectl("create", "-f", "-", input=json.dumps(manifest))
    _bind(server, ns, name, node)


def _bind(server: Server, ns: str, name: str, node: str) -> None:
    code, body = server.http().call(
        "POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding",
        {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
         "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    assert code == 201, body


def _renew_time(server: Server, node: str) -> str:
    return str(_get(server, "lease", node, "-n", "kube-node-lease")["spec"]["renewTime"])


def _running(server: Server, ns: str, name: str) -> Any:
    pod = _get(server, "pod", name, "-n", ns)
    return pod if pod["status"].get("phase") == "Running" else None


def test_nodes_register_ready_and_heartbeat(server: Server, namespace: str, sims: Any) -> None:
    names = node_names(2, f"{namespace}-n")
    sims(names)
    out = server.kubectl("get", "nodes", *names, "-o", "wide").stdout
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    for line in lines[1:]:
        cols = line.split()
        assert cols[1] == "Ready" and cols[4] == "v1.37.0-pinnace-sim", line
        assert ipaddress.ip_address(cols[5]) in ipaddress.ip_network("10.200.0.0/16")
        assert cols[-1] == "sim://1.0"

    node = _get(server, "node", names[0])
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == names[0]
    assert labels["type"] == "sim" and labels["node.kubernetes.io/instance-type"] == "pinnace-sim"
    assert node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0"
    st = node["status"]
    assert st["capacity"]["cpu"] == "32" and st["allocatable"]["pods"] == "110"
    assert st["capacity"]["memory"] == "256Gi"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == \
        ("True", "KubeletReady", "kubelet is posting ready status")
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
        "Ready": "True"}
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert st["nodeInfo"]["containerRuntimeVersion"] == "sim://1.0"
    assert {a["type"] for a in st["addresses"]} == {"InternalIP", "Hostname"}

    lease = _get(server, "lease", names[0], "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == names[0]
    assert lease["spec"]["leaseDurationSeconds"] == 40
    owner = lease["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == \
        ("Node", names[0], node["metadata"]["uid"])
    first = _renew_time(server, names[0])
    wait_for(lambda: _renew_time(server, names[0]) > first, 10, what="lease renewal")


def test_bound_pods_run_with_unique_ips(server: Server, namespace: str, sims: Any) -> None:
    names = node_names(2, f"{namespace}-n")
    sims(names)
    for i in range(4):
        _pod(server, namespace, f"web-{i}", names[i % 2])
    _pod(server, namespace, "host", names[0], hostNetwork=True)
    for i in range(4):
        wait_for(lambda i=i: _running(server, namespace, f"web-{i}"), 20, what=f"web-{i} running")
    host = wait_for(lambda: _running(server, namespace, "host"), 20, what="host pod running")

    out = server.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout.splitlines()
    header = out[0].split()
    assert header[:8] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                          "NOMINATED"]
    rows = {r.split()[0]: r.split() for r in out[1:]}
    ips = set()
    for i in range(4):
        row = rows[f"web-{i}"]
        assert row[1:3] == ["1/1", "Running"] and row[6] == names[i % 2]
        ips.add(row[5])
        assert ipaddress.ip_address(row[5]) in ipaddress.ip_network("10.244.0.0/16")
    assert len(ips) == 4
    node_ip = _get(server, "node", names[0])["status"]["addresses"][0]["address"]
    assert host["status"]["podIP"] == node_ip == host["status"]["hostIP"]

    pod = _get(server, "pod", "web-0", "-n", namespace)
    st = pod["status"]
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True",
                     "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("sim://") and "running" in cs["state"]
    assert cs["image"] == "docker.io/library/nginx:1.27"
    assert st["podIPs"] == [{"ip": st["podIP"]}] and st["hostIPs"] == [{"ip": st["hostIP"]}]
    assert st["qosClass"] == "BestEffort" and st["startTime"]
    server.kubectl("wait", "--for=condition=Ready", "pod/web-1", "-n", namespace,
                   "--timeout=10s")


def test_graceful_deletion_completes(server: Server, namespace: str, sims: Any) -> None:
    names = node_names(1, f"{namespace}-n")
    sims(names)
    _pod(server, namespace, "doomed", names[0])
    ip = wait_for(lambda: _running(server, namespace, "doomed"), 20)["status"]["podIP"]
    # The default 30 s grace period: kubectl waits until the simulated kubelet finishes.
    server.kubectl("delete", "pod", "doomed", "-n", namespace, "--timeout=20s")
    assert server.kubectl("get", "pod", "doomed", "-n", namespace,
                          check=False).returncode != 0
    # The address is free again, but is not handed out at once.
    _pod(server, namespace, "next", names[0])
    again = wait_for(lambda: _running(server, namespace, "next"), 20)["status"]["podIP"]
    assert again != ip


def test_stopped_node_goes_quiet_and_comes_back(server: Server, namespace: str,
                                                sims: Any) -> None:
    names = node_names(2, f"{namespace}-n")
    sim = sims(names)
    sim.call(sim.sim.stop_node, names[0])
    time.sleep(0.8)  # let a renewal already in flight land
    frozen = _renew_time(server, names[0])
    # Two renewals of the live node later, the stopped one has not moved.
    for _ in range(2):
        other = _renew_time(server, names[1])
        wait_for(lambda other=other: _renew_time(server, names[1]) > other, 10,
                 what="the live node renewing")
    assert _renew_time(server, names[0]) == frozen

    _pod(server, namespace, "waiting", names[0])
    time.sleep(1)
    assert _get(server, "pod", "waiting", "-n", namespace)["status"]["phase"] == "Pending"

    sim.call(sim.sim.start_node, names[0])
    wait_for(lambda: _running(server, namespace, "waiting"), 20, what="pod after restart")
    wait_for(lambda: _renew_time(server, names[0]) > frozen, 10, what="renewal after restart")


def test_job_pods_complete_when_annotated(server: Server, namespace: str, sims: Any) -> None:
    names = node_names(1, f"{namespace}-n")
    sims(names)
    _pod(server, namespace, "task", names[0], restartPolicy="Never",
         annotations={"pinnace.dev/sim-complete-after": "1s"})
    _pod(server, namespace, "forever", names[0], restartPolicy="Never")
    pod = wait_for(lambda: (p := _get(server, "pod", "task", "-n", namespace))["status"]
                   .get("phase") == "Succeeded" and p, 20, what="task succeeded")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    row = server.kubectl("get", "pod", "task", "-n", namespace, "--no-headers").stdout.split()
    assert row[1:3] == ["0/1", "Completed"]
    assert _get(server, "pod", "forever", "-n", namespace)["status"]["phase"] == "Running"


def test_existing_node_is_taken_over_with_its_pod_cidr(server: Server, namespace: str,
                                                        sims: Any) -> None:
    names = node_names(1, f"{namespace}-n")
    # The Node exists already (a simulator restart), with a range from node IPAM.
    server.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": names[0]},
        "spec": {"podCIDR": "10.250.7.0/24", "podCIDRs": ["10.250.7.0/24"]}}))
    sims(names)
    row = server.kubectl("get", "node", names[0], "--no-headers").stdout.split()
    assert row[1] == "Ready"
    _pod(server, namespace, "inrange", names[0])
    pod = wait_for(lambda: _running(server, namespace, "inrange"), 20)
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("10.250.7.0/24")


def test_two_hundred_nodes_all_get_leases(server: Server, namespace: str, sims: Any) -> None:
    names = node_names(200, f"{namespace}-s")
    sims(names, renew_interval=10)
    leases = _get(server, "leases", "-n", "kube-node-lease")["items"]
    have = {item["metadata"]["name"] for item in leases}
    assert set(names) <= have
    nodes = server.kubectl("get", "nodes", "--no-headers").stdout.splitlines()
    ours = [n.split() for n in nodes if n.startswith(f"{namespace}-s")]
    assert len(ours) == 200 and all(r[1] == "Ready" for r in ours)


def test_deleted_node_goes_quiet_until_started_again(server: Server, namespace: str,
                                                     sims: Any) -> None:
    names = node_names(1, f"{namespace}-n")
    sim = sims(names)
    old_uid = _get(server, "node", names[0])["metadata"]["uid"]
    server.kubectl("delete", "node", names[0])
    time.sleep(1)  # several renewal periods: nothing registers it again
    assert server.kubectl("get", "node", names[0], check=False).returncode != 0

    sim.call(sim.sim.start_node, names[0])
    node = wait_for(lambda: server.kubectl("get", "node", names[0], "-o", "json",
                                           check=False).stdout, 10, what="node re-registered")
    uid = json.loads(node)["metadata"]["uid"]
    assert uid != old_uid
    wait_for(lambda: _get(server, "lease", names[0], "-n", "kube-node-lease")["metadata"]
             ["ownerReferences"][0]["uid"] == uid, 10, what="lease owned by the new node")


def test_a_pod_marked_not_ready_by_someone_else_is_reported_ready_again(
        server: Server, namespace: str, sims: Any) -> None:
    """The node lifecycle controller marks a node's pods not Ready while the
    node looks down; a live kubelet reports them Ready again."""
    names = node_names(1, f"{namespace}-n")
    sims(names)
    _pod(server, namespace, "steady", names[0])
    pod = wait_for(lambda: _running(server, namespace, "steady"), 20)
    conditions = [c if c["type"] != "Ready" else {**c, "status": "False",
                                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}
                  for c in pod["status"]["conditions"]]
    code, body = server.http().call(
        "PATCH", f"/api/v1/namespaces/{namespace}/pods/steady/status",
        {"status": {"conditions": conditions}}, ctype="application/merge-patch+json")
    assert code == 200, body

    def ready() -> bool:
        p = _get(server, "pod", "steady", "-n", namespace)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in p["status"]["conditions"])

    wait_for(ready, 20, what="the pod Ready again")


def test_pinnace_sim_plays_a_stage_file(server: Server, namespace: str, tmp_path: Any) -> None:
    """`pinnace sim --stages F`: pods matching a stage exit with its code;
    a bad stage file is refused, naming the field."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n- match: {labels: {app: x}}\n  exitCode: 300\n")
    proc = subprocess.run([sys.executable, "-m", "pinnace.cli.main", "sim", "--kubeconfig",
                           str(server.kubeconfig), "--stages", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "bad.yaml: stages[0].exitCode: exit code must be 0..255, got 300" in proc.stderr

    stages = tmp_path / "stages.yaml"
    stages.write_text(f"""
apiVersion: pinnace.dev/v1alpha1
kind: SimStages
stages:
- name: flaky
  match: {{namespace: {namespace}, labels: {{app: flaky}}}}
  exitAfter: 500ms
  exitCode: 3
""")
    node = f"{namespace}-st"
    sim = subprocess.Popen([sys.executable, "-m", "pinnace.cli.main", "sim", "--kubeconfig",
                            str(server.kubeconfig), "--prefix", node, "--stages", str(stages)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        wait_for(lambda: server.kubectl("get", "node", f"{node}0", check=False).returncode == 0,
                 30, what="the simulated node")
        server.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "flaky", "namespace": namespace, "labels": {"app": "flaky"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "app", "image": "nginx:1.27"}]}}))
        _pod(server, namespace, "steady", f"{node}0", restartPolicy="Never")
        _bind(server, namespace, "flaky", f"{node}0")
        pod = wait_for(lambda: (p := _get(server, "pod", "flaky", "-n", namespace))["status"]
                       .get("phase") == "Failed" and p, 30, what="flaky failed")
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (3, "Error")
        assert _get(server, "pod", "steady", "-n", namespace)["status"]["phase"] == "Running"
    finally:
        sim.terminate()
        sim.wait(10)
