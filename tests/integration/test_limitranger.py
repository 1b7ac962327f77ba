"""LimitRanger through kubectl: defaults fill what containers leave out
(and the pod says so), bounds refuse pods and claims with upstream's words."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Server, wait_for


def _apply(cluster: Server, obj: dict[str, object]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def test_defaults_and_bounds(cluster: Server, cluster_ns: str) -> None:
    ns = cluster_ns
    _apply(cluster, {"apiVersion": "v1", "kind": "LimitRange",
                     "metadata": {"name": "limits", "namespace": ns},
                     "spec": {"limits": [
                         {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                          "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"},
                          "maxLimitRequestRatio": {"cpu": "10"}},
                         {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}}]}})

    def defaulted(name: str) -> dict[str, object] | None:
        """The pod, once the server's cache of LimitRanges (fed by a watch) has the new one."""
        cluster.kubectl("run", name, "--image=busybox", "-n", ns)
        pod = json.loads(cluster.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)
        if pod["spec"]["containers"][0].get("resources"):
            return pod  # type: ignore[no-any-return]
        cluster.kubectl("delete", "pod", name, "-n", ns, "--now")
        return None

    pod: Any = wait_for(lambda: defaulted("plain"), what="defaults applied")
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == \
        "LimitRanger plugin set: cpu, memory request for container plain; cpu, memory limit " \
        "for container plain"
    assert pod["status"]["qosClass"] == "Burstable"

    proc = cluster.kubectl("run", "big", "--image=busybox", "-n", ns,
                           "--overrides", json.dumps({"spec": {"containers": [{
                               "name": "big", "image": "busybox",
                               "resources": {"limits": {"cpu": "2"}}}]}}), check=False)
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' \
        in proc.stderr
    proc = cluster.kubectl("run", "greedy", "--image=busybox", "-n", ns,
                           "--overrides", json.dumps({"spec": {"containers": [{
                               "name": "greedy", "image": "busybox",
                               "resources": {"requests": {"cpu": "50m"},
                                             "limits": {"cpu": "1"}}}]}}), check=False)
    assert "cpu max limit to request ratio per Container is 10, but provided ratio is " \
           "20.000000" in proc.stderr

    proc = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "small", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "500Mi"}}}}))
    assert 'persistentvolumeclaims "small" is forbidden: minimum storage usage per ' \
           "PersistentVolumeClaim is 1Gi, but request is 500Mi" in proc.stderr
