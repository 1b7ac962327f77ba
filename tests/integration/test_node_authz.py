"""The Node authorizer and NodeRestriction, through kubectl with node
certificates (CN=system:node:NAME, O=system:nodes) as a joining kubelet gets:
a node reads only what its own pods use and changes only its own objects."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import Server, wait_for
from tests.integration.test_rbac import User, forbidden, new_user


def _node(cluster: Server, name: str) -> str:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    return str(cluster.kubectl("get", "node", name, "-o", "jsonpath={.metadata.uid}").stdout)


def _bound_pod(cluster: Server, ns: str, name: str, node: str,
               container: dict[str, object] | None = None, **spec: object) -> None:
    """A pod already bound to ``node`` (no kubelet runs it: only its references matter)."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                        "labels": {"app": name}},
        "spec": {"nodeName": node,
                 "containers": [{"name": "c", "image": "busybox", **(container or {})}],
                 **spec}}))


@pytest.fixture
def nodes(cluster: Server, cluster_ns: str) -> tuple[User, User]:
    names = [f"na-{os.getpid()}-{cluster_ns[-6:]}-{i}" for i in (1, 2)]
    for n in names:
        _node(cluster, n)
    users = tuple(new_user(cluster, f"system:node:{n}", ("system:nodes",)) for n in names)
    yield users  # type: ignore[misc]
    cluster.kubectl("delete", "node", *names, "--wait=false", check=False)


def _name(user: User) -> str:
    return user.name.removeprefix("system:node:")


def test_a_node_reads_only_what_its_pods_use(cluster: Server, cluster_ns: str,
                                             nodes: tuple[User, User]) -> None:
    ns, (n1, n2) = cluster_ns, nodes
    cluster.kubectl("create", "secret", "generic", "vol-secret", "--from-literal=k=v", "-n", ns)
    cluster.kubectl("create", "secret", "generic", "other", "--from-literal=k=v", "-n", ns)
    cluster.kubectl("create", "configmap", "env-cm", "--from-literal=k=v", "-n", ns)
    _bound_pod(cluster, ns, "p1", _name(n1),
               volumes=[{"name": "s", "secret": {"secretName": "vol-secret"}}],
               container={"env": [{"name": "K", "valueFrom": {"configMapKeyRef": {
                   "name": "env-cm", "key": "k"}}}]})

    assert n1.kubectl("get", "secret", "vol-secret", "-n", ns, "-o", "name").stdout.strip() == \
        "secret/vol-secret"
    n1.kubectl("get", "configmap", "env-cm", "-n", ns)
    n1.kubectl("get", "pod", "p1", "-n", ns)
    # The kubelet's per-object watch: a list narrowed to the name.
    listed = n1.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/secrets?fieldSelector="
                        "metadata.name%3Dvol-secret").stdout
    assert [i["metadata"]["name"] for i in json.loads(listed)["items"]] == ["vol-secret"]

    msg = forbidden(n2, "get", "secret", "vol-secret", "-n", ns)
    assert f'secrets "vol-secret" is forbidden: User "{n2.name}" cannot get resource "secrets" ' \
           f'in API group "" in the namespace "{ns}": no relationship found between node ' \
           f"'{_name(n2)}' and this object" in msg
    forbidden(n1, "get", "secret", "other", "-n", ns)
    msg = forbidden(n1, "get", "secrets", "-n", ns)
    assert "No Object name found" in msg
    forbidden(n1, "delete", "secret", "vol-secret", "-n", ns)
    forbidden(n2, "get", "pod", "p1", "-n", ns)

    # Pods: only its own, by the field selector the kubelet uses.
    mine = n1.kubectl("get", "pods", "-A", f"--field-selector=spec.nodeName={_name(n1)}",
                      "-o", "name").stdout.split()
    assert mine == ["pod/p1"]
    msg = forbidden(n1, "get", "pods", "-A")
    assert "can only list/watch pods with spec.nodeName field selector" in msg

    # Moved away, the pod takes the node's access with it.
    cluster.kubectl("delete", "pod", "p1", "-n", ns, "--grace-period=0", "--force")
    wait_for(lambda: n1.kubectl("get", "secret", "vol-secret", "-n", ns,
                                check=False).returncode != 0,
             what="the secret refused once no pod of the node uses it")


def test_volumes_and_tokens_through_the_pod(cluster: Server, cluster_ns: str,
                                            nodes: tuple[User, User]) -> None:
    ns, (n1, n2) = cluster_ns, nodes
    pv = f"pv-{ns}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "storageClassName": "manual", "hostPath": {"path": "/tmp/x"},
                  "claimRef": {"namespace": ns, "name": "data"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "data", "namespace": ns},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                  "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}}}]}))
    try:
        cluster.kubectl("create", "serviceaccount", "robot", "-n", ns)
        _bound_pod(cluster, ns, "db", _name(n1), serviceAccountName="robot",
                   volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}])
        _bound_pod(cluster, ns, "other", _name(n2), serviceAccountName="robot")
        n1.kubectl("get", "pvc", "data", "-n", ns)
        n1.kubectl("get", "pv", pv)
        forbidden(n2, "get", "pvc", "data", "-n", ns)
        msg = forbidden(n2, "get", "pv", pv)
        assert "no relationship found between node" in msg
        forbidden(n1, "get", "pv")  # only by name

        # A token for its own pod's account, bound to that pod; not for another node's pod.
        uid = cluster.kubectl("get", "pod", "db", "-n", ns, "-o",
                              "jsonpath={.metadata.uid}").stdout
        bound = ("--bound-object-kind=Pod", "--bound-object-name=db", f"--bound-object-uid={uid}")
        token = n1.kubectl("create", "token", "robot", "-n", ns, *bound).stdout.strip()
        assert token.count(".") == 2
        msg = forbidden(n2, "create", "token", "robot", "-n", ns, *bound)
        assert "node requested token bound to a pod scheduled on a different node" in msg
        msg = forbidden(n1, "create", "token", "robot", "-n", ns, *bound[:2])
        assert "node requested token with a pod binding without a uid" in msg
        msg = forbidden(n1, "create", "token", "robot", "-n", ns)
        assert "node requested token not bound to a pod" in msg
    finally:
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_a_node_changes_only_its_own_objects(cluster: Server, cluster_ns: str,
                                             nodes: tuple[User, User]) -> None:
    ns, (n1, n2) = cluster_ns, nodes
    name1, name2 = _name(n1), _name(n2)

    # Its own Node, within limits.
    n1.kubectl("label", "node", name1, "example.com/disk=ssd")
    msg = forbidden(n1, "label", "node", name2, "example.com/disk=ssd")
    assert f'nodes "{name2}" is forbidden: node "{name1}" is not allowed to modify node ' \
           f'"{name2}"' in msg
    msg = forbidden(n1, "label", "node", name1, "node-restriction.kubernetes.io/trusted=yes")
    assert "is not allowed to modify labels: node-restriction.kubernetes.io/trusted" in msg
    msg = forbidden(n1, "taint", "node", name1, "dedicated=db:NoSchedule")
    assert f'node "{name1}" is not allowed to modify taints' in msg
    forbidden(n1, "delete", "node", name1)

    # Pods: status of its own, mirror pods only.
    _bound_pod(cluster, ns, "theirs", name2)
    _bound_pod(cluster, ns, "mine", name1)

    def status_update(user: User, pod: str, labels: dict[str, str] | None = None) -> str:
        # As a kubelet writes status: a PUT, no read of pods/status first.
        obj = json.loads(cluster.kubectl("get", "pod", pod, "-n", ns, "-o", "json").stdout)
        obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        obj["metadata"]["labels"] = labels or obj["metadata"]["labels"]
        proc = user.kubectl("replace", "--subresource=status", "-f", "-",
                            input=json.dumps(obj), check=False)
        return proc.stderr if proc.returncode else ""

    assert status_update(n1, "mine") == ""
    assert f'node "{name1}" can only update pod status for pods with spec.nodeName set to ' \
           "itself" in status_update(n1, "theirs")
    assert f'node "{name1}" cannot update labels through pod status' in status_update(
        n1, "mine", {"app": "changed"})
    msg = forbidden(n1, "delete", "pod", "theirs", "-n", ns)
    assert f'node "{name1}" can only delete pods with spec.nodeName set to itself' in msg
    msg = forbidden(n1, "run", "sneaky", "--image=busybox", "-n", ns,
                    f'--overrides={{"spec": {{"nodeName": "{name1}"}}}}')
    assert 'pod does not have "kubernetes.io/config.mirror" annotation' in msg
    uid = cluster.kubectl("get", "node", name1, "-o", "jsonpath={.metadata.uid}").stdout
    mirror = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "static-web", "namespace": ns,
        "annotations": {"kubernetes.io/config.mirror": "x"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name1, "uid": uid,
                             "controller": True}]},
        "spec": {"nodeName": name1, "containers": [{"name": "c", "image": "busybox"}]}}
    n1.kubectl("create", "-f", "-", input=json.dumps(mirror))
    n1.kubectl("delete", "pod", "mine", "-n", ns, "--wait=false")

    # Its own Lease only.
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": name2, "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": name2}}
    proc = n1.kubectl("create", "-f", "-", input=json.dumps(lease), check=False)
    assert "can only access node lease with the same name as the requesting node" in proc.stderr
    n1.kubectl("create", "-f", "-", input=json.dumps(
        {**lease, "metadata": {"name": name1, "namespace": "kube-node-lease"}}))
    cluster.kubectl("delete", "lease", name1, "-n", "kube-node-lease")


def test_a_nodes_rules_review_says_it_is_incomplete(cluster: Server, cluster_ns: str,
                                                    nodes: tuple[User, User]) -> None:
    """What a node may do depends on the pods bound to it, which rules cannot
    say: the review is marked incomplete, as upstream's Node authorizer has it."""
    n1, _ = nodes
    body = json.dumps({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                       "spec": {"namespace": cluster_ns}})
    # --validate=false: kubectl's schema check lists CRDs, which a node may not.
    review = json.loads(n1.kubectl("create", "--validate=false", "-o", "json", "-f", "-",
                                   input=body).stdout)
    assert review["status"]["incomplete"] is True
    assert review["status"]["evaluationError"] == \
        "node authorizer does not support user rule resolution"
    listed = n1.kubectl("auth", "can-i", "--list", "-n", cluster_ns)
    assert "incomplete" in listed.stderr + listed.stdout
    # Anyone else's review is complete.
    admin = json.loads(cluster.kubectl("create", "-o", "json", "-f", "-", input=body).stdout)
    assert admin["status"]["incomplete"] is False and "evaluationError" not in admin["status"]
