"""Pod Security admission through kubectl: namespace labels choose the level;
enforce refuses, warn warns (kubectl prints it), and a bad label is refused."""

from __future__ import annotations

import json

from tests.conftest import Server

RESTRICTED_OK = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "c", "image": "busybox", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}


def _pod(ns: str, name: str, spec: dict[str, object]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": ns}, "spec": spec})


def test_enforce_refuses_and_warn_warns(cluster: Server, cluster_ns: str) -> None:
    ns = cluster_ns
    cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/warn=restricted")
    proc = cluster.kubectl("run", "root", "--image=busybox", "--privileged", "-n", ns,
                           check=False)
    assert proc.returncode != 0
    assert 'Error from server (Forbidden): pods "root" is forbidden: violates PodSecurity ' \
           '"restricted:latest": privileged (container "root" must not set ' \
           "securityContext.privileged=true), allowPrivilegeEscalation != false (container " \
           '"root" must set securityContext.allowPrivilegeEscalation=false)' in proc.stderr
    assert 'runAsNonRoot != true (pod or container "root" must set ' \
           "securityContext.runAsNonRoot=true)" in proc.stderr
    assert "Warning:" not in proc.stderr  # a refusal carries no warning on top
    assert cluster.kubectl("get", "pod", "root", "-n", ns, check=False).returncode != 0

    done = cluster.kubectl("create", "-f", "-", input=_pod(ns, "hardened", RESTRICTED_OK))
    assert "pod/hardened created" in done.stdout and "Warning" not in done.stderr

    # A workload is never refused, but its template is warned about.
    proc = cluster.kubectl("create", "deployment", "web", "--image=busybox", "-n", ns)
    assert 'Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation ' \
           '!= false (container "busybox" must set ' \
           "securityContext.allowPrivilegeEscalation=false)" in proc.stderr


def test_warn_only_and_the_namespace_labels(cluster: Server, cluster_ns: str) -> None:
    ns = cluster_ns
    cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/warn=baseline")
    proc = cluster.kubectl("create", "-f", "-", input=_pod(ns, "host", {
        "hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]}))
    assert "pod/host created" in proc.stdout
    assert 'Warning: would violate PodSecurity "baseline:latest": host namespaces ' \
           "(hostNetwork=true)" in proc.stderr

    proc = cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=bogus",
                           check=False)
    assert proc.returncode != 0
    assert f'Namespace "{ns}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: ' \
           'Invalid value: "bogus": must be one of privileged, baseline, restricted' in proc.stderr

    # Tightening enforce over pods that would fail it: allowed, with upstream's warnings.
    proc = cluster.kubectl("label", "ns", ns, "pod-security.kubernetes.io/enforce=baseline")
    assert f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce ' \
           'level "baseline:latest"' in proc.stderr
    assert "Warning: host: host namespaces" in proc.stderr
