"""API semantics through raw HTTPS, the way client libraries see them:
paging, watch, resourceVersion rules, finalizers, subresources, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import HTTP, Server


@pytest.fixture
def http(server: Server) -> HTTP:
    return server.http()


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"k": name}}


def test_paging_with_limit_and_continue(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for i in range(7):
        assert http.call("POST", base, cm(f"c{i}"))[0] == 201
    names: list[str] = []
    code, page = http.call("GET", base + "?limit=3")
    assert code == 200 and len(page["items"]) == 3
    assert page["metadata"]["remainingItemCount"] == 4
    names += [i["metadata"]["name"] for i in page["items"]]
    while page["metadata"].get("continue"):
        code, page = http.call("GET", f"{base}?limit=3&continue={page['metadata']['continue']}")
        names += [i["metadata"]["name"] for i in page["items"]]
    assert names == [f"c{i}" for i in range(7)]


def test_watch_from_resource_version_and_selectors(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _, first = http.call("POST", base, cm("a", app="x"))
    rv = first["metadata"]["resourceVersion"]
    http.call("POST", base, cm("b", app="y"))
    http.call("PATCH", f"{base}/a", {"metadata": {"labels": {"app": "z"}}},
              "application/merge-patch+json")
    events = http.stream(f"{base}?watch=true&resourceVersion={rv}&labelSelector=app%3Dx"
                         f"&timeoutSeconds=2", 5)
    # "a" stops matching app=x: the watcher sees it leave as DELETED.
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "a")]
    all_events = http.stream(f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=2", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in all_events] == [
        ("ADDED", "b"), ("MODIFIED", "a")]


def test_watch_send_initial_events_ends_with_bookmark(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http.call("POST", base, cm("one"))
    http.call("POST", base, cm("two"))
    events = http.stream(f"{base}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
                         f"&resourceVersionMatch=NotOlderThan&timeoutSeconds=2", 3)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_optimistic_concurrency(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _, obj = http.call("POST", base, cm("occ"))
    stale = json.loads(json.dumps(obj))
    obj["data"]["k"] = "new"
    code, updated = http.call("PUT", f"{base}/occ", obj)
    assert code == 200 and int(updated["metadata"]["resourceVersion"]) > \
        int(stale["metadata"]["resourceVersion"])
    stale["data"]["k"] = "lost"
    code, st = http.call("PUT", f"{base}/occ", stale)
    assert code == 409 and st["reason"] == "Conflict"
    # A no-op update writes nothing and keeps the resourceVersion.
    code, same = http.call("PUT", f"{base}/occ", updated)
    assert same["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]


def test_finalizers_hold_deletion(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    obj = cm("fin")
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    http.call("POST", base, obj)
    code, pending = http.call("DELETE", f"{base}/fin")
    assert code == 200 and pending["metadata"]["deletionTimestamp"]
    code, still = http.call("GET", f"{base}/fin")
    assert code == 200 and still["metadata"]["finalizers"] == ["example.com/hold"]
    http.call("PATCH", f"{base}/fin", {"metadata": {"finalizers": None}},
              "application/merge-patch+json")
    assert http.call("GET", f"{base}/fin")[0] == 404


def test_generate_name_and_delete_collection(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    made = set()
    for _ in range(3):
        body = cm("")
        body["metadata"] = {"generateName": "gen-", "labels": {"batch": "1"}}
        code, obj = http.call("POST", base, body)
        assert code == 201 and obj["metadata"]["name"].startswith("gen-")
        made.add(obj["metadata"]["name"])
    assert len(made) == 3
    http.call("POST", base, cm("keep"))
    code, _ = http.call("DELETE", base + "?labelSelector=batch%3D1")
    assert code == 200
    _, left = http.call("GET", base)
    assert [i["metadata"]["name"] for i in left["items"]] == ["keep"]


def test_status_subresource_and_generation(http: HTTP, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}},
           "status": {"replicas": 99}}
    code, obj = http.call("POST", base, dep)
    assert code == 201 and "replicas" not in obj.get("status", {})
    assert obj["metadata"]["generation"] == 1 and obj["spec"]["replicas"] == 1
    code, obj = http.call("PATCH", f"{base}/d/status", {"status": {"replicas": 3},
                                                         "spec": {"replicas": 7}},
                          "application/merge-patch+json")
    assert obj["status"]["replicas"] == 3 and obj["spec"]["replicas"] == 1
    assert obj["metadata"]["generation"] == 1
    code, obj = http.call("PATCH", f"{base}/d", {"spec": {"replicas": 4}},
                          "application/merge-patch+json")
    assert obj["metadata"]["generation"] == 2 and obj["status"]["replicas"] == 3
    code, scale = http.call("GET", f"{base}/d/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4
    assert scale["status"]["selector"] == "a=b"


def test_pod_binding_and_eviction(http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    code, obj = http.call("POST", base, pod)
    assert code == 201 and obj["status"]["phase"] == "Pending"
    assert obj["spec"]["restartPolicy"] == "Always" and obj["spec"]["dnsPolicy"] == "ClusterFirst"
    assert obj["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert obj["spec"]["serviceAccountName"] == "default"
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    # A binding naming another pod's uid (the pod was made again) is refused.
    stale = {**binding, "metadata": {"name": "p", "uid": "0000-not-this-pod"}}
    code, st = http.call("POST", f"{base}/p/binding", stale)
    assert code == 409 and st["reason"] == "Conflict"
    assert "Precondition failed: UID in precondition: 0000-not-this-pod" in st["message"]
    _, obj = http.call("GET", f"{base}/p")
    assert not obj["spec"].get("nodeName")
    binding["metadata"]["uid"] = obj["metadata"]["uid"]
    assert http.call("POST", f"{base}/p/binding", binding)[0] == 201
    _, obj = http.call("GET", f"{base}/p")
    assert obj["spec"]["nodeName"] == "node-1"
    code, st = http.call("POST", f"{base}/p/binding", binding)
    assert code == 409
    _, nodes = http.call("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1")
    assert [p["metadata"]["name"] for p in nodes["items"]] == ["p"]
    ev = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"},
          "deleteOptions": {"gracePeriodSeconds": 0}}
    assert http.call("POST", f"{base}/p/eviction", ev)[0] == 201
    assert http.call("GET", f"{base}/p")[0] == 404


def test_errors_are_status_objects(http: HTTP, namespace: str) -> None:
    code, st = http.call("GET", "/api/v1/nosuchthings")
    assert code == 404 and st["kind"] == "Status"
    code, st = http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps", b"{not json",
                         "application/json")
    assert code == 400 and st["reason"] == "BadRequest"
    code, st = http.call("POST", "/api/v1/namespaces/nowhere/configmaps", cm("x"))
    assert code == 404 and st["message"] == 'namespaces "nowhere" not found'
    code, st = http.call("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                          "data": {"bad key!": "v"}})
    assert code == 422 and st["reason"] == "Invalid"
    assert st["details"]["causes"][0]["field"] == "data[bad key!]" or \
        "data" in st["details"]["causes"][0]["field"]


def test_metrics_and_openapi(http: HTTP) -> None:
    code, text = http.call("GET", "/metrics", accept="text/plain")
    assert code == 200
    assert b"apiserver_request_total" in text
    assert b"apiserver_request_duration_seconds_bucket" in text
    code, index = http.call("GET", "/openapi/v3")
    assert "api/v1" in index["paths"] and "apis/apps/v1" in index["paths"]
    code, v2 = http.call("GET", "/openapi/v2")
    assert code == 200 and "io.k8s.api.core.v1.Pod" in v2["definitions"]


def test_protobuf_only_clients_get_protobuf(http: HTTP, namespace: str) -> None:
    from pinnace.api import protobuf

    base = f"/api/v1/namespaces/{namespace}/configmaps"
    body = protobuf.encode(cm("pb"))
    code, _ = http.call("POST", base, body, ctype=protobuf.CONTENT_TYPE)
    assert code == 201
    code, raw = http.call("GET", f"{base}/pb", accept=protobuf.CONTENT_TYPE)
    got = protobuf.decode(raw)
    assert got["kind"] == "ConfigMap" and got["data"] == {"k": "pb"}
    code, raw = http.call("GET", base, accept=protobuf.CONTENT_TYPE)
    listed = protobuf.decode(raw)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["pb"]
    rv = listed["metadata"]["resourceVersion"]
    http.call("DELETE", f"{base}/pb")
    import urllib.request
    req = urllib.request.Request(f"{http.base}{base}?watch=true&resourceVersion={rv}"
                                 f"&timeoutSeconds=2", headers={"Accept": protobuf.CONTENT_TYPE})
    with urllib.request.urlopen(req, context=http.ctx, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith(protobuf.CONTENT_TYPE)
        data = resp.read()
    size = int.from_bytes(data[:4], "big")
    kind, obj = protobuf.decode_watch_event(data[:4 + size])
    assert kind == "DELETED" and obj["metadata"]["name"] == "pb"


def test_daemonset_template_generation_annotation(server: Server, namespace: str) -> None:
    k, ns = server.kubectl, namespace
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
          "metadata": {"name": "agent", "annotations": {
              "deprecated.daemonset.template.generation": "7"}},
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": {"metadata": {"labels": {"app": "agent"}},
                                "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(ds))

    def generation() -> str:
        out = k("-n", ns, "get", "ds", "agent", "-o",
                r"jsonpath={.metadata.annotations.deprecated\.daemonset\.template\.generation}")
        return out.stdout

    assert generation() == "1"  # the server's, not the client's
    k("-n", ns, "set", "image", "ds/agent", "a=agent:2")
    assert generation() == "2"
    k("-n", ns, "label", "ds", "agent", "tier=node")  # not a template change
    assert generation() == "2"
    # An empty `annotations:` in YAML (common in generated manifests) is null.
    k("-n", ns, "create", "-f", "-", input=json.dumps(
        {**ds, "metadata": {"name": "bare", "annotations": None}}))
    out = k("-n", ns, "get", "ds", "bare", "-o", "json").stdout
    assert json.loads(out)["metadata"]["annotations"] == {
        "deprecated.daemonset.template.generation": "1"}


# -- pods: priority, scheduling gates, binding, eviction --------------------------------------

def _pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def _condition(pod: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == type_), None)


def test_priority_admission(server: Server, http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    classes = "/apis/scheduling.k8s.io/v1/priorityclasses"
    rows = server.kubectl("get", "priorityclasses", "--no-headers").stdout.splitlines()
    assert {tuple(r.split()[:3]) for r in rows} >= {
        ("system-node-critical", "2000001000", "false"),
        ("system-cluster-critical", "2000000000", "false")}
    refused = server.kubectl("delete", "priorityclass", "system-node-critical", check=False)
    assert refused.returncode != 0
    assert "system-node-critical.scheduling.k8s.io is forbidden: this is a system priority " \
        "class and cannot be deleted" in refused.stderr
    suffix = namespace[-12:]
    high, dflt = f"high-{suffix}", f"default-{suffix}"
    try:
        assert http.call("POST", classes, {"apiVersion": "scheduling.k8s.io/v1",
                                           "kind": "PriorityClass", "metadata": {"name": high},
                                           "value": 1000, "preemptionPolicy": "Never"})[0] == 201
        code, pod = http.call("POST", base, _pod("named", priorityClassName=high))
        assert code == 201
        assert (pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == (1000, "Never")
        code, pod = http.call("POST", base, _pod("plain"))
        assert (pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == \
            (0, "PreemptLowerPriority") and "priorityClassName" not in pod["spec"]
        code, pod = http.call("POST", base, _pod("critical",
                                                 priorityClassName="system-node-critical"))
        assert code == 201 and pod["spec"]["priority"] == 2000001000

        code, st = http.call("POST", base, _pod("unknown", priorityClassName="nope"))
        assert (code, st["reason"]) == (403, "Forbidden")
        assert st["message"] == 'pods "unknown" is forbidden: no PriorityClass with name nope was found'
        code, st = http.call("POST", base, _pod("stated", priority=5))
        assert code == 403 and st["message"] == (
            'pods "stated" is forbidden: the integer value of priority (5) must not be provided '
            "in pod spec; priority admission controller computed 0 from the given PriorityClass "
            "name")
        code, st = http.call("POST", base, _pod("policy", priorityClassName=high,
                                                preemptionPolicy="PreemptLowerPriority"))
        assert code == 403 and "the string value of PreemptionPolicy (PreemptLowerPriority) " \
            "must not be provided in pod spec; priority admission controller computed Never" \
            in st["message"]
        # A pod generated from a template is named by its prefix, as upstream's admission sees it.
        gen = _pod("", priorityClassName="nope")
        gen["metadata"] = {"generateName": "gen-"}
        assert http.call("POST", base, gen)[1]["message"].startswith('pods "gen-" is forbidden')

        # The priority set on create stays when a replace leaves it out.
        _, named = http.call("GET", f"{base}/named")
        del named["spec"]["priority"], named["spec"]["preemptionPolicy"]
        named["metadata"]["labels"] = {"replaced": "yes"}
        code, named = http.call("PUT", f"{base}/named", named)
        assert code == 200 and named["spec"]["priority"] == 1000

        # The global default: its name and value for pods that name no class; only one.
        assert http.call("POST", classes, {"apiVersion": "scheduling.k8s.io/v1",
                                           "kind": "PriorityClass", "metadata": {"name": dflt},
                                           "value": 7, "globalDefault": True})[0] == 201
        code, pod = http.call("POST", base, _pod("defaulted"))
        assert (pod["spec"]["priority"], pod["spec"]["priorityClassName"]) == (7, dflt)
        second = server.kubectl("create", "priorityclass", f"second-{suffix}", "--value=8",
                                "--global-default", check=False)
        assert second.returncode != 0 and (
            f'priorityclasses.scheduling.k8s.io "second-{suffix}" is forbidden: PriorityClass '
            f"{dflt} is already marked as default. Only one default can exist") in second.stderr
    finally:
        server.kubectl("delete", "priorityclass", high, dflt, "--ignore-not-found")


def test_scheduling_gates_and_binding(server: Server, http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    gates = [{"name": "example.com/a"}, {"name": "example.com/b"}]
    code, pod = http.call("POST", base, _pod("gated", schedulingGates=gates))
    # No scheduler runs here: the API server itself says why the pod waits.
    cond = _condition(pod, "PodScheduled")
    assert code == 201 and cond is not None and (cond["status"], cond["reason"], cond["message"]) \
        == ("False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
    row = server.kubectl("-n", namespace, "get", "pod", "gated", "--no-headers").stdout.split()
    assert row[2] == "SchedulingGated"

    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "gated"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    code, st = http.call("POST", f"{base}/gated/binding", binding)
    assert (code, st["reason"]) == (409, "Conflict") and st["message"] == (
        'Operation cannot be fulfilled on pods/binding "gated": pod gated has non-empty '
        ".spec.schedulingGates")
    added = server.kubectl("-n", namespace, "patch", "pod", "gated", "--type=json", "-p",
                           json.dumps([{"op": "add", "path": "/spec/schedulingGates/-",
                                        "value": {"name": "example.com/c"}}]), check=False)
    assert added.returncode != 0 and (
        "spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new "
        "scheduling gate 'example.com/c'") in added.stderr
    server.kubectl("-n", namespace, "patch", "pod", "gated", "--type=json", "-p",
                   json.dumps([{"op": "remove", "path": "/spec/schedulingGates"}]))
    # A nomination left from a preemption goes once the pod is bound.
    code, _ = http.call("PATCH", f"{base}/gated/status", {"status": {"nominatedNodeName": "n9"}},
                        "application/merge-patch+json")
    assert code == 200
    assert http.call("POST", f"{base}/gated/binding", binding)[0] == 201
    _, pod = http.call("GET", f"{base}/gated")
    assert pod["spec"]["nodeName"] == "node-1" and "nominatedNodeName" not in pod["status"]
    assert [c["type"] for c in pod["status"]["conditions"]] == ["PodScheduled"]
    assert _condition(pod, "PodScheduled")["status"] == "True"  # type: ignore[index]

    code, st = http.call("POST", base, _pod("pinned", nodeName="node-1", schedulingGates=gates))
    assert code == 422 and st["details"]["causes"] == [{
        "reason": "FieldValueForbidden", "field": "spec.nodeName",
        "message": "Forbidden: cannot be set until all schedulingGates have been cleared"}]


def _running(http: HTTP, base: str, name: str, ready: bool = True,
             labels: dict[str, str] | None = None) -> None:
    """A pod bound to a node and running, as a kubelet would report it."""
    assert http.call("POST", base, _pod(name, labels or {"app": "db"}))[0] == 201
    assert http.call("POST", f"{base}/{name}/binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"kind": "Node", "name": "node-1"}})[0] == 201
    status = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    assert http.call("PATCH", f"{base}/{name}/status", {"status": status},
                     "application/merge-patch+json")[0] == 200


def _budget(http: HTTP, ns: str, name: str, **status: Any) -> None:
    """A PodDisruptionBudget for app=db whose status says what the disruption
    controller would have worked out (no controller runs with this server)."""
    base = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
    assert http.call("POST", base, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}},
                 **status.pop("spec", {})}})[0] == 201
    body = {"status": {"observedGeneration": 1, "currentHealthy": 2, "desiredHealthy": 1,
                       "expectedPods": 2, **status}}
    assert http.call("PATCH", f"{base}/{name}/status", body,
                     "application/merge-patch+json")[0] == 200


def _evict(http: HTTP, ns: str, name: str, **delete_options: Any) -> tuple[int, Any]:
    return http.call("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name},
        "deleteOptions": delete_options})


def test_eviction_spends_the_disruption_budget(server: Server, http: HTTP,
                                               namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    base = f"/api/v1/namespaces/{namespace}/pods"
    pdbs = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
    for name in ("a", "b", "c"):
        _running(http, base, name)
    _budget(http, namespace, "db", disruptionsAllowed=1)

    # A dry run takes nothing.
    assert _evict(http, namespace, "a", dryRun=["All"])[0] == 201
    _, pdb = http.call("GET", f"{pdbs}/db")
    assert pdb["status"]["disruptionsAllowed"] == 1 and "disruptedPods" not in pdb["status"]

    assert _evict(http, namespace, "a")[0] == 201
    _, pdb = http.call("GET", f"{pdbs}/db")
    assert pdb["status"]["disruptionsAllowed"] == 0 and list(pdb["status"]["disruptedPods"]) == ["a"]
    allowed = _condition(pdb, "DisruptionAllowed")
    assert allowed is not None and (allowed["status"], allowed["reason"]) == \
        ("False", "InsufficientPods")
    _, pod = http.call("GET", f"{base}/a")  # bound to a node: it terminates gracefully
    target = _condition(pod, "DisruptionTarget")
    assert pod["metadata"].get("deletionTimestamp") and target is not None and \
        (target["status"], target["reason"], target["message"]) == \
        ("True", "EvictionByEvictionAPI", "Eviction API: evicting")

    # Healthy pods to spare, but the disruption is spent until the controller counts again.
    code, st = _evict(http, namespace, "b")
    assert code == 429 and st["details"]["causes"][0]["message"] == \
        "The disruption budget db does not allow evicting pods currently"
    # Counted again (as the disruption controller would): "a" is as good as gone.
    assert http.call("PATCH", f"{pdbs}/db/status", {"status": {"currentHealthy": 1}},
                     "application/merge-patch+json")[0] == 200
    # The official client sees the refusal kubectl drain waits on.
    api = client.CoreV1Api(server.api_client())
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_pod_eviction("b", namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name="b")))
    assert refused.value.status == 429
    st = json.loads(refused.value.body)
    assert st["reason"] == "TooManyRequests" and \
        st["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert st["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                        "The disruption budget db needs 1 healthy pods and has "
                                        "1 currently"}]
    _, pod = http.call("GET", f"{base}/b")
    assert not pod["metadata"].get("deletionTimestamp") and not _condition(pod, "DisruptionTarget")

    # A budget whose spec changed since it was counted refuses until it is counted again.
    code, _ = http.call("PATCH", f"{pdbs}/db", {"spec": {"minAvailable": 2}},
                        "application/merge-patch+json")
    code, st = _evict(http, namespace, "b")
    assert code == 429 and st["details"]["causes"][0]["message"] == \
        "The disruption budget db is still being processed by the server."
    assert st["details"]["retryAfterSeconds"] == 10


def test_eviction_without_a_budget_to_spend(server: Server, http: HTTP, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    _budget(http, namespace, "db", disruptionsAllowed=0,
            spec={"unhealthyPodEvictionPolicy": "AlwaysAllow"})
    # A pod that never ran has disrupted nothing.
    assert http.call("POST", base, _pod("pending", {"app": "db"}))[0] == 201
    assert _evict(http, namespace, "pending")[0] == 201
    assert http.call("GET", f"{base}/pending")[0] == 404  # unbound: gone at once
    # An unready pod goes when the budget says AlwaysAllow, taking nothing from it.
    _running(http, base, "unready", ready=False)
    assert _evict(http, namespace, "unready")[0] == 201
    _, pdb = http.call("GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/db")
    assert pdb["status"]["disruptionsAllowed"] == 0 and "disruptedPods" not in pdb["status"]
    # A ready one is guarded.
    _running(http, base, "ready")
    assert _evict(http, namespace, "ready")[0] == 429
    # Two budgets over one pod: the eviction subresource does not decide between them.
    _budget(http, namespace, "db2", disruptionsAllowed=5)
    code, st = _evict(http, namespace, "ready")
    assert code == 500 and st["message"] == ("This pod has more than one PodDisruptionBudget, "
                                             "which the eviction subresource does not support.")
    code, st = http.call("POST", f"{base}/ready/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}})
    assert code == 400 and st["message"] == "name in URL does not match name in Eviction object"
