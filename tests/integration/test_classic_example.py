"""The classic example end to end on two simulated nodes, through real kubectl:
every component synchronised only through List-Watch on the API server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "classic"


def _sim(server: Server, prefix: str) -> subprocess.Popen[bytes]:
    """One simulated node in its own process, so the test can kill it like a machine."""
    log = (server.data_dir / f"sim-{prefix}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pinnace.cli.main", "sim", "--nodes", "1", "--prefix", prefix,
         "--kubeconfig", str(server.kubeconfig)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def fast_cluster(tmp_path: Path) -> Iterator[tuple[Server, dict[str, subprocess.Popen[bytes]]]]:
    """A whole cluster whose node failures are noticed in seconds, not minutes."""
    srv = start_server(tmp_path / "data", "--datastore", "memory",
                       "--node-monitor-grace-period", "4", "--node-monitor-period", "1",
                       "--default-unreachable-toleration-seconds", "2",
                       "--default-not-ready-toleration-seconds", "2", command="server")
    sims = {name: _sim(srv, name) for name in ("node-a-", "node-b-")}
    try:
        yield srv, sims
    finally:
        for p in sims.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        srv.stop()


def _running(k: object, selector: str) -> list[dict]:
    out = k("get", "pods", "-l", selector, "-o", "json").stdout  # type: ignore[operator]
    return [p for p in json.loads(out)["items"]
            if p.get("status", {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def test_classic_example_on_two_simulated_nodes(fast_cluster) -> None:  # type: ignore[no-untyped-def]
    srv, sims = fast_cluster
    k = srv.kubectl
    nodes = wait_for(lambda: (n := k("get", "nodes", "-o", "name").stdout.split()) and
                     len(n) == 2 and n, what="two nodes registered")
    wait_for(lambda: k("get", "nodes").stdout.count(" Ready ") == 2, what="both nodes Ready")
    assert sorted(nodes) == ["node/node-a-0", "node/node-b-0"]

    k("apply", "-f", str(EXAMPLES))
    mysql = wait_for(lambda: (p := _running(k, "app=mysql")) and len(p) == 1 and p,
                     what="mysql running")
    web = wait_for(lambda: (p := _running(k, "app=myweb")) and len(p) == 2 and p,
                   what="2 myweb pods running")
    assert all(p["status"]["podIP"] for p in mysql + web)
    # Replicas spread over the nodes (the scheduler's default topology spread).
    assert len({p["spec"]["nodeName"] for p in web}) == 2
    assert mysql[0]["spec"]["nodeName"] in ("node-a-0", "node-b-0")
    # Services find their pods.
    wait_for(lambda: "myweb" in k("get", "endpoints", "myweb", "-o",
                                  "jsonpath={.subsets[0].addresses[*].targetRef.name}").stdout,
             what="myweb endpoints")
    assert "8080:30001/TCP" in k("get", "svc", "myweb").stdout

    k("scale", "rc", "myweb", "--replicas=3")
    wait_for(lambda: len(_running(k, "app=myweb")) == 3, what="3 myweb after scaling")

    victim = web[0]["metadata"]["name"]
    k("delete", "pod", victim)
    wait_for(lambda: (names := [p["metadata"]["name"] for p in _running(k, "app=myweb")])
             and len(names) == 3 and victim not in names, what="the deleted pod replaced")

    # The machine running mysql dies: its node goes NotReady, and once the
    # pod's toleration runs out mysql is recreated on the other node.
    dead = mysql[0]["spec"]["nodeName"]
    proc = sims["node-a-" if dead.startswith("node-a-") else "node-b-"]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: f"{dead}   NotReady" in k("get", "nodes").stdout, timeout=30,
             what=f"{dead} NotReady")
    again = wait_for(lambda: (p := _running(k, "app=mysql")) and p[0]["spec"]["nodeName"] != dead
                     and p, timeout=60, what="mysql running on the surviving node")
    assert again[0]["metadata"]["name"] != mysql[0]["metadata"]["name"]
    taints = k("get", "node", dead, "-o", "jsonpath={.spec.taints[*].key}").stdout
    assert "node.kubernetes.io/unreachable" in taints


def test_deployment_rollout_and_undo_on_sim_nodes(fast_cluster) -> None:  # type: ignore[no-untyped-def]
    srv, _ = fast_cluster
    k = srv.kubectl
    wait_for(lambda: k("get", "nodes").stdout.count(" Ready ") == 2, what="both nodes Ready")
    k("create", "deployment", "web", "--image=nginx:1.25", "--replicas=3")
    k("rollout", "status", "deployment/web", "--timeout=60s")
    k("set", "image", "deployment/web", "nginx=nginx:1.26")
    k("rollout", "status", "deployment/web", "--timeout=60s")
    images = {p["spec"]["containers"][0]["image"] for p in _running(k, "app=web")}
    assert images == {"nginx:1.26"}
    history = k("rollout", "history", "deployment/web").stdout
    assert "1 " in history and "2 " in history
    k("rollout", "undo", "deployment/web")
    k("rollout", "status", "deployment/web", "--timeout=60s")
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in _running(k, "app=web")}
             == {"nginx:1.25"} and len(_running(k, "app=web")) == 3, what="rolled back")
    # Deleting the namespace's content: a whole namespace goes away.
    k("create", "namespace", "scratch")
    k("-n", "scratch", "create", "deployment", "tmp", "--image=busybox")
    wait_for(lambda: len(_running(lambda *a: k("-n", "scratch", *a), "app=tmp")) == 1,
             what="tmp running")
    k("delete", "namespace", "scratch", "--timeout=60s")
    assert k("get", "namespace", "scratch", check=False).returncode != 0
