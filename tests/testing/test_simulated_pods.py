"""Simulated pods that behave: Jobs complete, crashing Deployments crash-loop,
CronJobs fire when the clock is moved forward, nodes fail; all on a pinnace
cluster from the pytest plugin, seen through kubectl."""

from __future__ import annotations

import json

import pytest

from pinnace.testing import Cluster, wait_for

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: busybox}]
"""


def pods(c: Cluster, ns: str, selector: str = "") -> list[dict]:
    args = ["get", "pods", "-n", ns, "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(c.kubectl(*args).stdout)["items"]


@pytest.mark.pinnace(nodes=2)
def test_a_job_completes_on_simulated_nodes(pinnace_cluster: Cluster,
                                            pinnace_namespace: str) -> None:
    c, ns = pinnace_cluster, pinnace_namespace
    c.apply(JOB, namespace=ns)
    job = c.wait("job/pi", condition="Complete", namespace=ns, timeout=60)
    assert job["status"]["succeeded"] == 5
    done = pods(c, ns, "job-name=pi")
    assert sorted(p["status"]["phase"] for p in done) == ["Succeeded"] * 5
    assert {p["spec"]["nodeName"] for p in done} <= {"node-0", "node-1"}
    # Never more than the parallelism at once: the controller had nothing to take back.
    events = c.kubectl("get", "events", "-n", ns, "--field-selector",
                       "involvedObject.kind=Job", "-o", "json").stdout
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert reasons.count("SuccessfulCreate") == 5 and "SuccessfulDelete" not in reasons


CRASHING = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: crashy}
spec:
  replicas: 2
  selector: {matchLabels: {app: crashy}}
  template:
    metadata:
      labels: {app: crashy}
      annotations:
        pinnace.dev/sim-exit-after: 1s
        pinnace.dev/sim-exit-code: "1"
    spec:
      containers: [{name: app, image: crashy:1}]
"""


@pytest.mark.pinnace(nodes=1)
def test_a_crashing_deployment_shows_crash_loop_back_off(pinnace_cluster: Cluster,
                                                         pinnace_namespace: str) -> None:
    c, ns = pinnace_cluster, pinnace_namespace
    c.apply(CRASHING, namespace=ns)

    def crash_looping() -> list[dict]:
        items = pods(c, ns, "app=crashy")
        waiting = [p for p in items if (p["status"].get("containerStatuses") or [{}])[0]
                   .get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"]
        return waiting if len(waiting) == 2 else []

    looping = wait_for(crash_looping, 30, "both pods in CrashLoopBackOff")
    status = looping[0]["status"]["containerStatuses"][0]
    assert status["restartCount"] >= 2 and status["ready"] is False
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off 10s restarting failed container=app" in status["state"]["waiting"]["message"]
    table = c.kubectl("get", "pods", "-n", ns, "-l", "app=crashy").stdout
    rows = table.splitlines()[1:]
    assert len(rows) == 2 and all("CrashLoopBackOff" in r for r in rows), table
    # Past the back-off the container starts again and the count grows.
    before = status["restartCount"]
    c.advance(10)
    wait_for(lambda: min(p["status"]["containerStatuses"][0]["restartCount"]
                         for p in pods(c, ns, "app=crashy")) > before, 20, "another restart")
    deploy = c.get("deployment/crashy", ns)
    assert deploy is not None and not deploy["status"].get("availableReplicas")


CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/5 * * * *"
  successfulJobsHistoryLimit: 5
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: tick, image: busybox}]
"""


@pytest.mark.pinnace(nodes=1)
def test_a_cronjob_fires_when_the_clock_moves_and_its_jobs_complete(
        pinnace_cluster: Cluster, pinnace_namespace: str) -> None:
    c, ns = pinnace_cluster, pinnace_namespace
    c.apply(CRONJOB, namespace=ns)
    c.wait("cronjob/tick", namespace=ns)
    assert not json.loads(c.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    for fired in (1, 2):
        c.advance(300)

        def jobs_done(n: int = fired) -> list[dict]:
            items = json.loads(c.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
            complete = [j for j in items if any(
                cond["type"] == "Complete" and cond["status"] == "True"
                for cond in (j.get("status") or {}).get("conditions") or [])]
            return complete if len(complete) == n else []

        done = wait_for(jobs_done, 30, f"{fired} completed job(s)")
        assert all(j["metadata"]["ownerReferences"][0]["name"] == "tick" for j in done)
    cron = c.wait("cronjob/tick", namespace=ns, check=lambda o: o["status"].get(
        "lastSuccessfulTime"))
    assert cron["status"]["lastScheduleTime"]


@pytest.mark.pinnace(nodes=2, controllers=["nodelifecycle", "tainteviction"])
def test_a_stopped_node_goes_not_ready_when_time_moves_and_live_ones_do_not(
        pinnace_cluster: Cluster) -> None:
    c = pinnace_cluster
    c.stop_node("node-1")
    c.advance(45)  # past the 40 s node monitor grace period

    def ready(name: str) -> str:
        node = c.get(f"node/{name}")
        assert node is not None
        return next(x["status"] for x in node["status"]["conditions"] if x["type"] == "Ready")

    wait_for(lambda: ready("node-1") == "Unknown", 10, "node-1 Ready=Unknown")
    assert ready("node-0") == "True"
    node = c.get("node/node-1")
    assert node is not None and {t["key"] for t in node["spec"].get("taints") or []} >= {
        "node.kubernetes.io/unreachable"}
    c.start_node("node-1")
    wait_for(lambda: ready("node-1") == "True", 15, "node-1 Ready again")


@pytest.mark.pinnace(nodes=1)
def test_ttl_after_finished_and_readiness_delays_follow_the_clock(
        pinnace_cluster: Cluster, pinnace_namespace: str) -> None:
    c, ns = pinnace_cluster, pinnace_namespace
    c.apply("""
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  ttlSecondsAfterFinished: 3600
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata:
  name: slow
  annotations: {pinnace.dev/sim-ready-after: 2m}
spec:
  nodeName: node-0
  containers: [{name: app, image: app:1}]
""", namespace=ns)
    c.wait("job/once", condition="Complete", namespace=ns)
    pod = c.wait("pod/slow", namespace=ns, check=lambda p: p["status"].get("phase") == "Running")
    ready = next(x for x in pod["status"]["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False"
    c.advance(3600)
    c.wait("pod/slow", condition="Ready", namespace=ns, timeout=10)
    wait_for(lambda: c.get("job/once", ns) is None, 10, "the finished Job to be removed")


@pytest.mark.pinnace(nodes=1, controllers=["endpointslice"])
def test_flapping_readiness_takes_a_pod_in_and_out_of_its_service(
        pinnace_cluster: Cluster, pinnace_namespace: str) -> None:
    c, ns = pinnace_cluster, pinnace_namespace
    c.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: flappy
  labels: {app: flappy}
  annotations: {pinnace.dev/sim-readiness-flap: 30s}
spec:
  nodeName: node-0
  containers: [{name: app, image: app:1}]
---
apiVersion: v1
kind: Service
metadata: {name: flappy}
spec:
  selector: {app: flappy}
  ports: [{port: 80}]
""", namespace=ns)

    def endpoint_ready() -> str:
        return c.kubectl("get", "endpointslices", "-n", ns, "-l",
                         "kubernetes.io/service-name=flappy", "-o",
                         "jsonpath={.items[*].endpoints[*].conditions.ready}").stdout

    c.wait("pod/flappy", condition="Ready", namespace=ns)
    wait_for(lambda: endpoint_ready() == "true", 10, "a ready endpoint")
    c.advance(30)
    c.wait("pod/flappy", condition="Ready", status="False", namespace=ns, timeout=10)
    wait_for(lambda: endpoint_ready() == "false", 10, "the endpoint not ready")
    c.advance(30)
    c.wait("pod/flappy", condition="Ready", namespace=ns, timeout=10)
    assert c.get("pod/flappy", ns)["status"]["containerStatuses"][0]["restartCount"] == 0


@pytest.mark.pinnace(nodes=1, controllers=None, stages={"stages": [
    {"name": "heavy", "match": {"labels": {"app": "heavy"}}, "usage": "cpu=750m,memory=300Mi"}]})
def test_a_stage_sets_what_kubectl_top_shows(pinnace_cluster: Cluster,
                                            pinnace_namespace: str) -> None:
    c, ns = pinnace_cluster, pinnace_namespace
    c.apply("""
apiVersion: v1
kind: Pod
metadata: {name: heavy, labels: {app: heavy}}
spec:
  nodeName: node-0
  containers: [{name: app, image: app:1}]
""", namespace=ns)
    c.wait("pod/heavy", condition="Ready", namespace=ns)
    code, metrics = c.request("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/heavy")
    assert code == 200, metrics
    usage = metrics["containers"][0]["usage"]
    assert usage["cpu"] in ("750m", "750000000n") and usage["memory"] in ("300Mi", "314572800")
    top = c.kubectl("top", "pod", "heavy", "-n", ns).stdout
    assert "750m" in top and "300Mi" in top, top
