"""pods/ephemeralcontainers (kubectl debug) and pods/resize (in-place
resize) through kubectl: each changes its own part of the pod and refuses
what upstream refuses."""

from __future__ import annotations

import json

from tests.conftest import Server


def _pod(cluster: Server, ns: str, name: str, resources: dict[str, object]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}}))


def _get(cluster: Server, ns: str, name: str) -> dict[str, object]:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]


def test_kubectl_debug_adds_an_ephemeral_container(cluster: Server, cluster_ns: str) -> None:
    ns = cluster_ns
    _pod(cluster, ns, "web", {})
    cluster.kubectl("debug", "web", "-n", ns, "--image=busybox", "-c", "dbg", "--target=app",
                    "--", "sleep", "1")
    spec = _get(cluster, ns, "web")["spec"]
    (eph,) = spec["ephemeralContainers"]  # type: ignore[index]
    assert (eph["name"], eph["image"], eph["targetContainerName"]) == ("dbg", "busybox", "app")
    # The subresource reads as the pod.
    raw = json.loads(cluster.kubectl("get", "--raw",
                                     f"/api/v1/namespaces/{ns}/pods/web/ephemeralcontainers"
                                     ).stdout)
    assert raw["kind"] == "Pod" and raw["spec"]["ephemeralContainers"][0]["name"] == "dbg"
    # A second one is added beside it; the first may not be changed or removed.
    cluster.kubectl("debug", "web", "-n", ns, "--image=busybox", "-c", "dbg2")
    assert [e["name"] for e in _get(cluster, ns, "web")["spec"]["ephemeralContainers"]] == \
        ["dbg", "dbg2"]  # type: ignore[index]
    proc = cluster.kubectl("patch", "pod", "web", "-n", ns, "--subresource=ephemeralcontainers",
                           "--type=json", "-p", '[{"op":"remove","path":'
                           '"/spec/ephemeralContainers/0"}]', check=False)
    assert 'existing ephemeral containers "dbg" may not be removed' in proc.stderr
    proc = cluster.kubectl("patch", "pod", "web", "-n", ns, "--subresource=ephemeralcontainers",
                           "--type=json", "-p", json.dumps([{
                               "op": "add", "path": "/spec/ephemeralContainers/-",
                               "value": {"name": "app", "image": "busybox",
                                         "ports": [{"containerPort": 80}]}}]), check=False)
    assert 'spec.ephemeralContainers[2].name: Duplicate value: "app"' in proc.stderr
    assert "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral " \
           "Container" in proc.stderr
    # Only the ephemeral containers change through it.
    cluster.kubectl("patch", "pod", "web", "-n", ns, "--subresource=ephemeralcontainers",
                    "--type=merge", "-p", '{"metadata":{"labels":{"x":"y"}},'
                    '"spec":{"activeDeadlineSeconds":5}}', check=False)
    after = _get(cluster, ns, "web")
    assert "activeDeadlineSeconds" not in after["spec"]  # type: ignore[operator]


def test_resize_changes_cpu_and_memory_only(cluster: Server, cluster_ns: str) -> None:
    ns = cluster_ns
    _pod(cluster, ns, "sized", {"requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"cpu": "200m", "memory": "128Mi"}})
    cluster.kubectl("patch", "pod", "sized", "-n", ns, "--subresource=resize", "-p", json.dumps(
        {"spec": {"containers": [{"name": "app", "resources": {
            "requests": {"cpu": "150m"}, "limits": {"cpu": "300m"}}}]}}))
    res = _get(cluster, ns, "sized")["spec"]["containers"][0]["resources"]  # type: ignore[index]
    assert res == {"requests": {"cpu": "150m", "memory": "64Mi"},
                   "limits": {"cpu": "300m", "memory": "128Mi"}}
    proc = cluster.kubectl("patch", "pod", "sized", "-n", ns, "--subresource=resize", "-p",
                           json.dumps({"spec": {"containers": [{"name": "app", "resources": {
                               "requests": {"cpu": "300m", "memory": "128Mi"}}}]}}),
                           check=False)
    assert "Pod QOS Class may not change as a result of resizing" in proc.stderr
    proc = cluster.kubectl("patch", "pod", "sized", "-n", ns, "--subresource=resize", "-p",
                           json.dumps({"spec": {"containers": [{"name": "app", "resources": {
                               "limits": {"ephemeral-storage": "1Gi"}}}]}}), check=False)
    assert "only cpu and memory resources are mutable" in proc.stderr
    # The image does not change through it.
    cluster.kubectl("patch", "pod", "sized", "-n", ns, "--subresource=resize", "-p",
                    '{"spec":{"containers":[{"name":"app","image":"nginx"}]}}', check=False)
    assert _get(cluster, ns, "sized")["spec"]["containers"][0]["image"] == "busybox"  # type: ignore[index]
