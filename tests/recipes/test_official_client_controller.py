"""Recipe: a controller written with the official client, run in a thread
against a real cluster: every Deployment labelled expose=true gets a Service."""

import threading

from kubernetes import client, watch

from pinnace.testing import Cluster


def expose_controller(api: client.ApiClient, namespace: str, stop: threading.Event) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    while not stop.is_set():
        for event in watch.Watch().stream(apps.list_namespaced_deployment, namespace,
                                          label_selector="expose=true", timeout_seconds=1):
            d = event["object"]
            if event["type"] != "ADDED":
                continue
            port = d.spec.template.spec.containers[0].ports[0].container_port
            service = client.V1Service(
                metadata=client.V1ObjectMeta(name=d.metadata.name, owner_references=[
                    client.V1OwnerReference(api_version="apps/v1", kind="Deployment",
                                            name=d.metadata.name, uid=d.metadata.uid)]),
                spec=client.V1ServiceSpec(selector=d.spec.selector.match_labels,
                                          ports=[client.V1ServicePort(port=port)]))
            try:
                core.create_namespaced_service(namespace, service)
            except client.ApiException as e:
                if e.status != 409:
                    raise


def test_expose_controller(pinnace_cluster: Cluster, pinnace_namespace: str,
                           pinnace_client: client.ApiClient) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=expose_controller,
                              args=(pinnace_client, pinnace_namespace, stop))
    worker.start()
    try:
        pinnace_cluster.kubectl("create", "deployment", "web", "--image=nginx", "--port=8080",
                                "-n", pinnace_namespace)
        pinnace_cluster.kubectl("label", "deployment", "web", "expose=true",
                                "-n", pinnace_namespace)
        service = pinnace_cluster.wait("service/web", namespace=pinnace_namespace)
        assert service["spec"]["ports"][0]["port"] == 8080
        assert service["spec"]["clusterIP"].startswith("10.")
    finally:
        stop.set()
        worker.join(10)
