"""The official Kubernetes Python client against pinnace."""

from __future__ import annotations

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.conftest import Server


def _deployment(name: str, image: str = "nginx:1") -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="web", image=image,
                    ports=[client.V1ContainerPort(container_port=80)])]))))


def test_deployment_crud_patch_scale(server: Server, namespace: str) -> None:
    apps = client.AppsV1Api(server.api_client())
    created = apps.create_namespaced_deployment(namespace, _deployment("web"))
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
    # A strategic merge patch (the client's default for dict bodies) merges
    # containers by name instead of replacing the list.
    patched = apps.patch_namespaced_deployment("web", namespace, {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}})
    c = patched.spec.template.spec.containers[0]
    assert c.image == "nginx:2" and c.ports[0].container_port == 80
    assert patched.metadata.generation == 2
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 5
    listed = apps.list_namespaced_deployment(namespace, label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment(namespace, _deployment("web"))
    assert e.value.status == 409
    apps.delete_namespaced_deployment("web", namespace,
                                      body=client.V1DeleteOptions(propagation_policy="Background"))
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("web", namespace)
    assert e.value.status == 404


def test_invalid_object_reports_causes(server: Server, namespace: str) -> None:
    core = client.CoreV1Api(server.api_client())
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="s"),
                           spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=0)]))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(namespace, svc)
    assert e.value.status == 422
    assert "spec.ports[0].port" in e.value.body


def test_watch_stream_sees_changes_in_order(server: Server, namespace: str) -> None:
    core = client.CoreV1Api(server.api_client())
    start = core.list_namespaced_service(namespace).metadata.resource_version
    for name in ("a", "b"):
        core.create_namespaced_service(namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))
    core.delete_namespaced_service("a", namespace)
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_service, namespace, resource_version=start,
                       timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
