"""ResourceQuota enforced at admission, through kubectl: the create over the
limit is refused with kube-apiserver's message and nothing is stored."""

from __future__ import annotations

import json

from tests.conftest import Server, wait_for


def _quota(cluster: Server, ns: str, name: str, hard: dict[str, str]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": ns}, "spec": {"hard": hard}}))
    # Admission needs the controller's first count, as upstream's does.
    wait_for(lambda: (json.loads(cluster.kubectl("get", "resourcequota", name, "-n", ns, "-o",
                                                 "json").stdout).get("status") or {})
             .get("used"), what=f"quota {name} counted")


def _pod(ns: str, name: str, cpu: str = "", memory: str = "") -> str:
    resources = {"requests": {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}}
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"containers": [{"name": "c", "image": "busybox",
                                                "resources": resources}]}})


def test_a_count_quota_refuses_the_object_past_it(cluster: Server, cluster_ns: str) -> None:
    ns = cluster_ns
    _quota(cluster, ns, "objects", {"configmaps": "3"})  # kube-root-ca.crt is one
    cluster.kubectl("create", "configmap", "a", "-n", ns)
    cluster.kubectl("create", "configmap", "b", "-n", ns)
    proc = cluster.kubectl("create", "configmap", "c", "-n", ns, check=False)
    assert proc.returncode != 0
    assert 'configmaps "c" is forbidden: exceeded quota: objects, requested: configmaps=1, ' \
           "used: configmaps=3, limited: configmaps=3" in proc.stderr
    assert cluster.kubectl("get", "configmap", "c", "-n", ns, check=False).returncode != 0
    # Deleting one makes room once the controller has counted again.
    cluster.kubectl("delete", "configmap", "a", "-n", ns)
    wait_for(lambda: cluster.kubectl("create", "configmap", "c", "-n", ns,
                                     check=False).returncode == 0, what="room for c")


def test_a_compute_quota_refuses_and_asks_for_requests(cluster: Server,
                                                      cluster_ns: str) -> None:
    ns = cluster_ns
    _quota(cluster, ns, "compute", {"requests.cpu": "1", "requests.memory": "1Gi"})
    proc = cluster.kubectl("create", "-f", "-", input=_pod(ns, "bare"), check=False)
    assert 'pods "bare" is forbidden: failed quota: compute: must specify requests.cpu for: c; ' \
           "requests.memory for: c" in proc.stderr
    cluster.kubectl("create", "-f", "-", input=_pod(ns, "small", "600m", "600Mi"))
    proc = cluster.kubectl("create", "-f", "-", input=_pod(ns, "big", "500m", "700Mi"),
                           check=False)
    assert proc.returncode != 0
    assert 'pods "big" is forbidden: exceeded quota: compute, requested: requests.cpu=500m,' \
           "requests.memory=700Mi, used: requests.cpu=600m,requests.memory=600Mi, limited: " \
           "requests.cpu=1,requests.memory=1Gi" in proc.stderr
    # A dry run is judged the same and charges nothing.
    cluster.kubectl("create", "-f", "-", "--dry-run=server", input=_pod(ns, "fits", "400m",
                                                                        "400Mi"))
    used = json.loads(cluster.kubectl("get", "resourcequota", "compute", "-n", ns, "-o",
                                      "json").stdout)["status"]["used"]
    assert used == {"requests.cpu": "600m", "requests.memory": "600Mi"}
    cluster.kubectl("create", "-f", "-", input=_pod(ns, "fits", "400m", "400Mi"))
