"""The Table responses kubectl renders for `kubectl get`."""

from datetime import UTC, datetime

import orjson
import pytest

from pinnace.api.resources import BUILTIN
from pinnace.apiserver.tables import (
    column_definitions,
    human_duration,
    partial_object_metadata,
    partial_object_metadata_list,
    row_cells,
    table,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def meta(name, created="2025-03-01T11:00:00Z", **kw):
    return {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
            "creationTimestamp": created, **kw}


def pod(name="web-0", spec=None, status=None, **metakw):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, **metakw),
            "spec": spec or {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            "status": status or {}}


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1.5, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"),
    (125, "2m5s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (50 * 3600, "2d2h"),
    (8 * 86400, "8d"), (729 * 86400, "729d"), (730 * 86400, "2y"), (731 * 86400, "2y1d"),
    (8 * 365 * 86400, "8y"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_pod_columns():
    cols = column_definitions("", "pods")
    assert [(c["name"], c["priority"]) for c in cols] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1),
        ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)]
    assert cols[0]["format"] == "name" and cols[0]["type"] == "string"
    assert cols[0]["description"].startswith("Name must be unique within a namespace.")
    assert cols[4]["description"].startswith("CreationTimestamp is a timestamp")


def test_pending_pod_without_node():
    p = pod(status={"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]})
    assert row_cells("", "pods", p, NOW) == [
        "web-0", "0/1", "Pending", "0", "60m", "<none>", "<none>", "<none>", "<none>"]


def test_running_pod_with_restarts():
    p = pod(spec={"nodeName": "node-1", "containers": [{"name": "app", "image": "a"},
                                                       {"name": "side", "image": "b"}]},
            status={"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        {"name": "app", "ready": True, "restartCount": 3,
                         "state": {"running": {"startedAt": "2025-03-01T11:56:00Z"}},
                         "lastState": {"terminated": {"exitCode": 1,
                                                      "finishedAt": "2025-03-01T11:55:00Z"}}},
                        {"name": "side", "ready": False, "restartCount": 0,
                         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
    cells = row_cells("", "pods", p, NOW)
    assert cells[:5] == ["web-0", "1/2", "CrashLoopBackOff", "3 (5m ago)", "60m"]
    assert cells[5:7] == ["10.244.0.5", "node-1"]


def test_container_creating_and_init_and_completed():
    creating = pod(spec={"nodeName": "n", "containers": [{"name": "app", "image": "a"}]},
                   status={"phase": "Pending", "containerStatuses": [
                       {"name": "app", "ready": False, "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}}}]})
    assert row_cells("", "pods", creating, NOW)[2] == "ContainerCreating"
    init = pod(spec={"initContainers": [{"name": "init", "image": "i"}],
                     "containers": [{"name": "app", "image": "a"}]},
               status={"phase": "Pending", "initContainerStatuses": [
                   {"name": "init", "ready": False, "restartCount": 0,
                    "state": {"running": {}}}]})
    assert row_cells("", "pods", init, NOW)[1:3] == ["0/1", "Init:0/1"]
    done = pod(status={"phase": "Succeeded", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    assert row_cells("", "pods", done, NOW)[1:3] == ["0/1", "Completed"]
    row = table("", "pods", [done], NOW)["rows"][0]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]


def test_terminating_pod():
    p = pod(deletionTimestamp="2025-03-01T11:59:00Z",
            status={"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}]})
    assert row_cells("", "pods", p, NOW)[1:3] == ["1/1", "Terminating"]


def test_readiness_gates_and_sidecar_count():
    p = pod(spec={"readinessGates": [{"conditionType": "lb/ready"}],
                  "initContainers": [{"name": "proxy", "image": "p", "restartPolicy": "Always"}],
                  "containers": [{"name": "app", "image": "a"}]},
            status={"phase": "Running", "conditions": [
                {"type": "Initialized", "status": "True"}, {"type": "lb/ready", "status": "True"}],
                    "initContainerStatuses": [{"name": "proxy", "ready": True, "started": True,
                                               "restartCount": 1, "state": {"running": {}}}],
                    "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                           "state": {"running": {}}}]})
    cells = row_cells("", "pods", p, NOW)
    assert cells[1:4] == ["2/2", "Running", "1"]
    assert cells[8] == "1/1"


def test_nodeport_and_loadbalancer_services():
    svc = {"metadata": meta("web"), "spec": {
        "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001},
                  {"port": 53, "protocol": "UDP", "nodePort": 30053}]}}
    assert row_cells("", "services", svc, NOW) == [
        "web", "NodePort", "10.96.0.10", "<none>", "80:30001/TCP,53:30053/UDP", "60m", "app=web"]
    lb = {"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"],
                                           "ports": [{"port": 443, "protocol": "TCP",
                                                      "nodePort": 31443}]}}
    assert row_cells("", "services", lb, NOW)[3] == "<pending>"
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    assert row_cells("", "services", lb, NOW)[3] == "192.0.2.10"
    headless = {"metadata": meta("db"), "spec": {"type": "ClusterIP", "clusterIP": "None"}}
    assert row_cells("", "services", headless, NOW)[2:5] == ["None", "<none>", "<none>"]
    assert [c["name"] for c in column_definitions("", "services")] == [
        "Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]


def test_replication_controller_with_two_replicas():
    rc = {"metadata": meta("web", created="2025-02-27T12:00:00Z"), "spec": {
        "replicas": 2, "selector": {"app": "web"},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
        "status": {"replicas": 2, "readyReplicas": 1}}
    assert row_cells("", "replicationcontrollers", rc, NOW) == [
        "web", 2, 2, 1, "2d", "nginx", "nginx:1.27", "app=web"]
    cols = column_definitions("", "replicationcontrollers")
    assert [(c["name"], c["type"], c["priority"]) for c in cols] == [
        ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
        ("Ready", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
        ("Images", "string", 1), ("Selector", "string", 1)]


def test_deployment_statefulset_job():
    dep = {"metadata": meta("web"), "spec": {
        "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
        "template": {"spec": {"containers": [{"name": "a", "image": "x"},
                                             {"name": "b", "image": "y"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert row_cells("apps", "deployments", dep, NOW) == [
        "web", "2/3", 3, 2, "60m", "a,b", "x,y", "app=web"]
    sts = {"metadata": meta("db"), "spec": {"replicas": 1, "template": {"spec": {
        "containers": [{"name": "pg", "image": "postgres"}]}}}, "status": {"readyReplicas": 1}}
    assert row_cells("apps", "statefulsets", sts, NOW) == ["db", "1/1", "60m", "pg", "postgres"]
    job = {"metadata": meta("pi"), "spec": {"completions": 1, "selector": {"matchLabels": {
        "batch.kubernetes.io/controller-uid": "u"}}, "template": {"spec": {"containers": [
            {"name": "pi", "image": "perl"}]}}},
        "status": {"succeeded": 1, "startTime": "2025-03-01T11:00:00Z",
                   "completionTime": "2025-03-01T11:00:42Z",
                   "conditions": [{"type": "Complete", "status": "True"}]}}
    assert row_cells("batch", "jobs", job, NOW)[:5] == ["pi", "Complete", "1/1", "42s", "60m"]


def test_node_namespace_configmap_secret():
    node = {"metadata": {"name": "n1", "creationTimestamp": "2025-02-01T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian"}}}
    assert row_cells("", "nodes", node, NOW) == [
        "n1", "Ready,SchedulingDisabled", "control-plane", "28d", "v1.37.0", "192.168.1.5",
        "<none>", "Debian", "<unknown>", "<unknown>"]
    ns = {"metadata": meta("kube-system"), "status": {"phase": "Active"}}
    assert row_cells("", "namespaces", ns, NOW) == ["kube-system", "Active", "60m"]
    cm = {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert row_cells("", "configmaps", cm, NOW) == ["cfg", 3, "60m"]
    secret = {"metadata": meta("tok"), "type": "Opaque", "data": {"k": "dg=="}}
    assert row_cells("", "secrets", secret, NOW) == ["tok", "Opaque", 1, "60m"]


def test_events_columns_and_cells():
    ev = {"metadata": meta("web-0.1"), "involvedObject": {"kind": "Pod", "name": "web-0"},
          "reason": "Pulled", "message": " Image pulled \n", "type": "Normal",
          "source": {"component": "kubelet", "host": "n1"},
          "firstTimestamp": "2025-03-01T11:58:00Z", "lastTimestamp": "2025-03-01T11:59:30Z",
          "count": 2}
    assert row_cells("", "events", ev, NOW) == [
        "30s", "Normal", "Pulled", "pod/web-0", "", "kubelet, n1", "Image pulled", "2m", 2,
        "web-0.1"]
    assert column_definitions("", "events")[-1]["format"] == "name"


def test_resources_without_printer_use_default_table():
    role = {"metadata": meta("reader", created="2025-01-02T03:04:05Z")}
    assert row_cells("rbac.authorization.k8s.io", "roles", role, NOW) == [
        "reader", "2025-01-02T03:04:05Z"]
    cols = column_definitions("apiextensions.k8s.io", "customresourcedefinitions")
    assert [(c["name"], c["type"], c["format"]) for c in cols] == [
        ("Name", "string", "name"), ("Created At", "date", "")]
    assert [c["name"] for c in column_definitions("example.com", "widgets")] == [
        "Name", "Created At"]


@pytest.mark.parametrize("info", [r for r in BUILTIN if "list" in r.verbs],
                         ids=lambda r: f"{r.group}/{r.resource}")
def test_every_builtin_prints_a_row_of_the_right_width(info):
    obj = {"metadata": meta("x")}
    cells = row_cells(info.group, info.resource, obj, NOW)
    assert len(cells) == len(column_definitions(info.group, info.resource))
    assert all(c["description"] for c in column_definitions(info.group, info.resource))


def test_table_object_shape():
    pods = [pod("a"), pod("b")]
    t = table("", "pods", pods, NOW, "Metadata", {"resourceVersion": "42", "continue": "tok"})
    assert list(t) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42", "continue": "tok"}
    assert t["rows"][0]["object"] == {"kind": "PartialObjectMetadata",
                                      "apiVersion": "meta.k8s.io/v1", "metadata": pods[0]["metadata"]}
    assert table("", "pods", pods, NOW, "Object")["rows"][1]["object"] is pods[1]
    assert table("", "pods", pods, NOW, "None")["rows"][0]["object"] is None
    assert table("", "pods", pods, NOW, headers=False)["columnDefinitions"] is None
    assert table("", "pods", [], NOW, list_meta={"resourceVersion": "1"})["rows"] == []
    with pytest.raises(ValueError, match='unrecognized includeObject value: "All"'):
        table("", "pods", pods, NOW, "All")
    orjson.dumps(t)


def test_partial_object_metadata():
    p = pod("a")
    assert partial_object_metadata(p) == {"kind": "PartialObjectMetadata",
                                          "apiVersion": "meta.k8s.io/v1",
                                          "metadata": p["metadata"]}
    lst = partial_object_metadata_list([p], {"resourceVersion": "9"})
    assert lst["kind"] == "PartialObjectMetadataList"
    assert lst["metadata"] == {"resourceVersion": "9"}
    assert lst["items"][0]["metadata"]["name"] == "a"


def test_more_kinds_cells():
    cj = {"metadata": meta("nightly"), "spec": {"schedule": "0 0 * * *", "suspend": False,
          "jobTemplate": {"spec": {"template": {"spec": {"containers": [
              {"name": "b", "image": "busybox"}]}}}}},
          "status": {"active": [{"name": "j1"}], "lastScheduleTime": "2025-03-01T11:59:00Z"}}
    assert row_cells("batch", "cronjobs", cj, NOW) == [
        "nightly", "0 0 * * *", "<none>", "False", 1, "60s", "60m", "b", "busybox", "<none>"]
    hpa = {"metadata": meta("web"), "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
        "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
        "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": 12}}}]}}
    assert row_cells("autoscaling", "horizontalpodautoscalers", hpa, NOW) == [
        "web", "Deployment/web", "cpu: 12%/80%", "1", 5, 2, "60m"]
    v1 = {"metadata": meta("old"), "spec": {"scaleTargetRef": {"kind": "Deployment",
          "name": "w"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}}
    assert row_cells("autoscaling", "horizontalpodautoscalers", v1, NOW)[2:4] == [
        "cpu: <unknown>/50%", "<unset>"]
    pvc = {"metadata": meta("data"), "spec": {"volumeName": "pv-1", "storageClassName": "local",
                                               "resources": {"requests": {"storage": "1Gi"}}},
           "status": {"phase": "Bound", "capacity": {"storage": "1Gi"},
                      "accessModes": ["ReadWriteOnce"]}}
    assert row_cells("", "persistentvolumeclaims", pvc, NOW) == [
        "data", "Bound", "pv-1", "1Gi", "RWO", "local", "<unset>", "60m", "<unset>"]
    ing = {"metadata": meta("web"), "spec": {"ingressClassName": "nginx", "rules": [
        {"host": "a.example"}, {"host": "b.example"}], "tls": [{"hosts": ["a.example"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
    assert row_cells("networking.k8s.io", "ingresses", ing, NOW) == [
        "web", "nginx", "a.example,b.example", "192.0.2.1", "80, 443", "60m"]
    ep = {"metadata": meta("web"), "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"}
                                                              for i in range(5)],
                                                "ports": [{"port": 80}]}]}
    assert row_cells("", "endpoints", ep, NOW)[1] == \
        "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."
    eps = {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 80}],
           "endpoints": [{"addresses": ["10.0.0.1"]}]}
    assert row_cells("discovery.k8s.io", "endpointslices", eps, NOW)[1:4] == [
        "IPv4", "80", "10.0.0.1"]
    sc = {"metadata": {"name": "local", "creationTimestamp": "2025-03-01T11:00:00Z",
                       "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
          "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}
    assert row_cells("storage.k8s.io", "storageclasses", sc, NOW) == [
        "local (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False,
        "60m"]
    rb = {"metadata": meta("view"), "roleRef": {"kind": "ClusterRole", "name": "view"},
          "subjects": [{"kind": "User", "name": "alice"},
                       {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}
    assert row_cells("rbac.authorization.k8s.io", "rolebindings", rb, NOW) == [
        "view", "ClusterRole/view", "60m", "alice", "", "tools/ci"]
    pdb = {"metadata": meta("web"), "spec": {"minAvailable": 1}, "status": {
        "disruptionsAllowed": 0}}
    assert row_cells("policy", "poddisruptionbudgets", pdb, NOW) == ["web", "1", "N/A", 0, "60m"]
    rq = {"metadata": meta("q"), "status": {"hard": {"pods": "10", "limits.cpu": "2"},
                                             "used": {"pods": "3"}}}
    assert row_cells("", "resourcequotas", rq, NOW) == ["q", "pods: 3/10", "limits.cpu: 0/2",
                                                        "60m"]
