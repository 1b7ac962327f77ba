"""Deployments through real kubectl: rolling updates and Recreate, revision
history, rollout status/history/undo/pause/resume/restart, conditions and
the progress deadline, with the replicaset controller and a fake kubelet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pinnace.controllers.deployment import DeploymentController
from pinnace.controllers.replicaset import ReplicaSetController
from tests.conftest import Server, wait_for
from tests.integration.controllers.workloads_harness import HOLD_LABEL, Harness, running


@pytest.fixture(scope="module")
def controllers(server: Server) -> Iterator[Harness]:
    with running(str(server.kubeconfig), [ReplicaSetController, DeploymentController]) as h:
        yield h


def deployment(name: str, replicas: int = 3, image: str = "nginx:1", **spec: Any) -> str:
    labels = {"app": name}
    labels.update(spec.pop("extra_labels", {}))
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec}}
    return json.dumps(body)


def get(server: Server, ns: str, *what: str) -> Any:
    return json.loads(server.kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def rs_of(server: Server, ns: str, name: str) -> list[dict[str, Any]]:
    items = get(server, ns, "rs")["items"]
    return [r for r in items
            if any(o["name"] == name for o in r["metadata"].get("ownerReferences") or [])]


def live_pods(server: Server, ns: str, app: str) -> list[dict[str, Any]]:
    return [p for p in get(server, ns, "pods", "-l", f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def rollout_ok(server: Server, ns: str, what: str) -> str:
    out = server.kubectl("-n", ns, "rollout", "status", what, "--timeout=40s", timeout=60)
    return out.stdout


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def test_create_rolls_out_and_reports(server: Server, namespace: str,
                                      controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=deployment("web"))
    assert 'deployment "web" successfully rolled out' in rollout_ok(server, ns, "deploy/web")
    d = get(server, ns, "deploy", "web")
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"],
            st["availableReplicas"]) == (3, 3, 3, 3)
    assert st["observedGeneration"] == d["metadata"]["generation"]
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert cond(d, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = cond(d, "Progressing")
    assert progressing["status"] == "True" and progressing["reason"] == "NewReplicaSetAvailable"
    [rs] = rs_of(server, ns, "web")
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == h
    ann = rs["metadata"]["annotations"]
    assert ann["deployment.kubernetes.io/revision"] == "1"
    assert ann["deployment.kubernetes.io/desired-replicas"] == "3"
    assert ann["deployment.kubernetes.io/max-replicas"] == "4"  # 25% of 3 rounds up to 1
    assert progressing["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
    pods = live_pods(server, ns, "web")
    assert len(pods) == 3 and all(p["metadata"]["name"].startswith(f"web-{h}-") for p in pods)
    described = k("-n", ns, "describe", "deploy", "web").stdout
    assert f"Scaled up replica set web-{h} from 0 to 3" in described
    assert "deployment-controller" in described
    k("-n", ns, "scale", "deploy/web", "--replicas=5")
    rollout_ok(server, ns, "deploy/web")
    wait_for(lambda: len(live_pods(server, ns, "web")) == 5, what="5 pods after scale")
    [rs] = rs_of(server, ns, "web")
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
    assert f"Scaled up replica set web-{h} from 3 to 5" in \
        k("-n", ns, "describe", "deploy", "web").stdout


def test_set_image_rolls_over_and_undo_rolls_back(server: Server, namespace: str,
                                                  controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=deployment("app", replicas=4))
    rollout_ok(server, ns, "deploy/app")
    [first] = rs_of(server, ns, "app")
    k("-n", ns, "set", "image", "deploy/app", "c=nginx:2")
    assert "successfully rolled out" in rollout_ok(server, ns, "deploy/app")
    rss = {r["metadata"]["name"]: r for r in rs_of(server, ns, "app")}
    assert len(rss) == 2
    old = rss.pop(first["metadata"]["name"])
    [new] = rss.values()
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 4
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    pods = live_pods(server, ns, "app")
    wait_for(lambda: len(live_pods(server, ns, "app")) == 4, what="old pods gone")
    assert all(p["spec"]["containers"][0]["image"] == "nginx:2"
               for p in live_pods(server, ns, "app"))
    described = k("-n", ns, "describe", "deploy", "app").stdout
    assert f"Scaled down replica set {old['metadata']['name']} from" in described
    assert f"NewReplicaSet:   {new['metadata']['name']}" in described
    hist = k("-n", ns, "rollout", "history", "deploy/app").stdout
    assert "REVISION" in hist and "1 " in hist and "2 " in hist
    detail = k("-n", ns, "rollout", "history", "deploy/app", "--revision=1").stdout
    assert "nginx:1" in detail
    k("-n", ns, "rollout", "undo", "deploy/app")
    rollout_ok(server, ns, "deploy/app")
    d = get(server, ns, "deploy", "app")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    back = wait_for(lambda: (r := [x for x in rs_of(server, ns, "app")
                                   if x["metadata"]["name"] == old["metadata"]["name"]][0])
                    ["spec"]["replicas"] == 4 and r, what="the old ReplicaSet scaled back up")
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert len(rs_of(server, ns, "app")) == 2  # rollback reuses the old ReplicaSet
    del pods


def test_pause_scale_resume(server: Server, namespace: str, controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=deployment("p", replicas=2))
    rollout_ok(server, ns, "deploy/p")
    k("-n", ns, "rollout", "pause", "deploy/p")
    wait_for(lambda: cond(get(server, ns, "deploy", "p"), "Progressing")["reason"] ==
             "DeploymentPaused", what="the paused condition")
    k("-n", ns, "set", "image", "deploy/p", "c=nginx:2")
    k("-n", ns, "scale", "deploy/p", "--replicas=3")
    wait_for(lambda: [r["spec"]["replicas"] for r in rs_of(server, ns, "p")] == [3],
             what="paused deployment scaled on its one ReplicaSet")
    d = get(server, ns, "deploy", "p")
    assert d["spec"]["paused"] is True
    assert cond(d, "Progressing")["message"] == "Deployment is paused"
    k("-n", ns, "rollout", "resume", "deploy/p")
    rollout_ok(server, ns, "deploy/p")
    rss = rs_of(server, ns, "p")
    assert sorted(r["spec"]["replicas"] for r in rss) == [0, 3]
    assert len(live_pods(server, ns, "p")) >= 3


def test_restart_makes_a_new_replicaset(server: Server, namespace: str,
                                        controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-", input=deployment("r", replicas=2))
    rollout_ok(server, ns, "deploy/r")
    k("-n", ns, "rollout", "restart", "deploy/r")
    rollout_ok(server, ns, "deploy/r")
    rss = rs_of(server, ns, "r")
    assert len(rss) == 2
    new = next(r for r in rss if r["spec"]["replicas"] == 2)
    assert "kubectl.kubernetes.io/restartedAt" in \
        new["spec"]["template"]["metadata"]["annotations"]


def test_recreate_stops_old_pods_first(server: Server, namespace: str,
                                       controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-",
      input=deployment("rc", replicas=2, strategy={"type": "Recreate"}))
    rollout_ok(server, ns, "deploy/rc")
    k("-n", ns, "set", "image", "deploy/rc", "c=nginx:2")
    rollout_ok(server, ns, "deploy/rc")
    pods = live_pods(server, ns, "rc")
    assert len(pods) == 2 and all(p["spec"]["containers"][0]["image"] == "nginx:2"
                                  for p in pods)
    described = k("-n", ns, "describe", "deploy", "rc").stdout
    down = described.index("from 2 to 0")
    up = described.rindex("from 0 to 2")
    assert down < up  # the old set went to zero before the new one came up


def test_progress_deadline_exceeded(server: Server, namespace: str,
                                    controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-",
      input=deployment("slow", replicas=1, progressDeadlineSeconds=1,
                       extra_labels={HOLD_LABEL: "true"}))
    d = wait_for(lambda: (x := get(server, ns, "deploy", "slow")).get("status", {}).get(
        "conditions") and cond(x, "Progressing")["reason"] == "ProgressDeadlineExceeded" and x,
        what="ProgressDeadlineExceeded")
    c = cond(d, "Progressing")
    assert c["status"] == "False" and "has timed out progressing." in c["message"]
    assert cond(d, "Available")["reason"] == "MinimumReplicasUnavailable"
    out = k("-n", ns, "rollout", "status", "deploy/slow", "--timeout=10s", check=False)
    assert out.returncode != 0 and "exceeded its progress deadline" in out.stderr


def test_history_limit_and_rolling_bounds(server: Server, namespace: str,
                                          controllers: Harness) -> None:
    k, ns = server.kubectl, namespace
    k("-n", ns, "create", "-f", "-",
      input=deployment("h", replicas=4, revisionHistoryLimit=1,
                       strategy={"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}))
    rollout_ok(server, ns, "deploy/h")
    for image in ("nginx:2", "nginx:3"):
        k("-n", ns, "set", "image", "deploy/h", f"c={image}")
        rollout_ok(server, ns, "deploy/h")
    wait_for(lambda: len(rs_of(server, ns, "h")) == 2, what="history trimmed to 1 old set")
    rss = rs_of(server, ns, "h")
    assert all(r["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"
               for r in rss)  # maxSurge 0
    revs = sorted(int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
                  for r in rss)
    assert revs == [2, 3]


def test_rolling_update_bounds_and_hash() -> None:
    from pinnace.controllers.deployment import fenceposts
    from pinnace.controllers.history import compute_hash

    def d(surge: Any, unavailable: Any, n: int) -> dict[str, Any]:
        return {"spec": {"replicas": n, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": surge, "maxUnavailable": unavailable}}}}

    assert fenceposts(d("25%", "25%", 10)) == (3, 2)  # surge rounds up, unavailable down
    assert fenceposts(d(0, 0, 5)) == (0, 1)  # both zero: one may be unavailable
    assert fenceposts(d("10%", "10%", 1)) == (1, 0)
    t = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}
    h = compute_hash(t)
    assert h == compute_hash({"spec": t["spec"], "metadata": t["metadata"]})  # key order free
    assert h != compute_hash(t, 1) and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
