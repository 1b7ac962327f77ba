"""The Node authorizer's graph and decisions, without a server."""

from __future__ import annotations

from typing import Any

from pinnace.apiserver.authn import User
from pinnace.apiserver.bootstrappolicy import node_rules
from pinnace.apiserver.nodeauthz import NodeAuthorizer, node_identity
from pinnace.apiserver.nodegraph import NodeGraph, pod_refs
from pinnace.apiserver.requestinfo import request_info

Obj = dict[str, Any]


def pod(name: str, node: str, rv: int = 1, **spec: Any) -> Obj:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)},
            "spec": {"nodeName": node, "containers": [{"name": "c"}], **spec}}


def test_pod_refs_cover_every_place_a_pod_names_an_object() -> None:
    p = pod("web", "n1", serviceAccountName="sa", imagePullSecrets=[{"name": "pull"}],
            initContainers=[{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
            ephemeralContainers=[{"name": "e", "env": [{"name": "X", "valueFrom": {
                "secretKeyRef": {"name": "debug-secret", "key": "k"}}}]}],
            volumes=[{"name": "a", "configMap": {"name": "vol-cm"}},
                     {"name": "b", "secret": {"secretName": "vol-secret"}},
                     {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                     {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}},
                     {"name": "p", "projected": {"sources": [
                         {"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}},
                         {"serviceAccountToken": {"path": "t"}}]}},
                     {"name": "csi", "csi": {"driver": "d",
                                             "nodePublishSecretRef": {"name": "csi-secret"}}}],
            resourceClaims=[{"name": "gpu", "resourceClaimName": "gpu-claim"}])
    assert pod_refs(p) == {
        ("serviceaccount", "ns", "sa"), ("secret", "ns", "pull"), ("configmap", "ns", "init-cm"),
        ("secret", "ns", "debug-secret"), ("configmap", "ns", "vol-cm"),
        ("secret", "ns", "vol-secret"), ("pvc", "ns", "data"), ("pvc", "ns", "web-scratch"),
        ("secret", "ns", "proj-secret"), ("configmap", "ns", "proj-cm"),
        ("secret", "ns", "csi-secret"), ("resourceclaim", "ns", "gpu-claim")}


def test_access_follows_the_pods_as_they_come_move_and_go() -> None:
    g = NodeGraph()
    shared = [{"name": "s", "secret": {"secretName": "shared"}}]
    g.event("ADDED", pod("a", "n1", volumes=shared))
    g.event("ADDED", pod("b", "n1", volumes=shared))
    g.event("ADDED", pod("pending", "", volumes=[{"name": "x", "secret": {"secretName": "x"}}]))
    assert g.related("n1", "secret", "ns", "shared")
    assert not g.related("n2", "secret", "ns", "shared")
    assert not g.related("n1", "secret", "ns", "x")  # not bound yet: nobody's
    assert not g.related("n1", "secret", "other-ns", "shared")
    assert g.related("n1", "pod", "ns", "a")

    g.event("DELETED", pod("a", "n1", volumes=shared))
    assert g.related("n1", "secret", "ns", "shared")  # b still uses it
    g.event("MODIFIED", pod("b", "n1", rv=5))  # b no longer mounts it
    assert not g.related("n1", "secret", "ns", "shared")
    assert not g.knows_node("n1") or not g.related("n1", "pod", "ns", "a")
    g.event("MODIFIED", pod("pending", "n2", rv=6,
                            volumes=[{"name": "x", "secret": {"secretName": "x"}}]))
    assert g.related("n2", "secret", "ns", "x")
    assert g.applied["Pod"] == 6


def test_volumes_through_their_claims() -> None:
    g = NodeGraph()
    g.event("ADDED", pod("db", "n1", volumes=[{"name": "d", "persistentVolumeClaim": {
        "claimName": "data"}}]))
    g.event("ADDED", {"kind": "PersistentVolume", "metadata": {"name": "pv1"},
                      "spec": {"csi": {"driver": "d", "nodeStageSecretRef": {
                          "name": "creds", "namespace": "storage"}}}})
    assert not g.related("n1", "pv", "", "pv1")  # the claim is not bound yet
    g.event("ADDED", {"kind": "PersistentVolumeClaim",
                      "metadata": {"name": "data", "namespace": "ns"},
                      "spec": {"volumeName": "pv1"}})
    assert g.related("n1", "pvc", "ns", "data")
    assert g.related("n1", "pv", "", "pv1")
    assert g.related("n1", "secret", "storage", "creds")
    assert not g.related("n2", "pv", "", "pv1")
    g.event("DELETED", {"kind": "PersistentVolumeClaim",
                        "metadata": {"name": "data", "namespace": "ns"}})
    assert not g.related("n1", "pv", "", "pv1")
    assert not g.related("n1", "secret", "storage", "creds")


NODE = User("system:node:n1", groups=("system:nodes", "system:authenticated"))


def decide(path: str, method: str = "GET", **query: str) -> tuple[bool, str]:
    g = NodeGraph()
    g.event("ADDED", pod("web", "n1", volumes=[{"name": "s", "secret": {"secretName": "mine"}}]))
    authz = NodeAuthorizer(g, node_rules())
    return authz.authorize("n1", request_info(method, path, query))


def test_node_identity_needs_name_and_group() -> None:
    assert node_identity(NODE) == ("n1", True)
    assert node_identity(User("system:node:n1", groups=("system:authenticated",))) == ("", False)
    assert node_identity(User("alice", groups=("system:nodes",))) == ("", False)


def test_decisions_and_their_reasons() -> None:
    assert decide("/api/v1/namespaces/ns/secrets/mine") == (True, "")
    assert decide("/api/v1/namespaces/ns/secrets", "GET",
                  fieldSelector="metadata.name=mine") == (True, "")
    assert decide("/api/v1/namespaces/ns/secrets", "GET", watch="true",
                  fieldSelector="metadata.name==mine") == (True, "")
    assert decide("/api/v1/namespaces/ns/secrets/theirs") == (
        False, "no relationship found between node 'n1' and this object")
    assert decide("/api/v1/namespaces/ns/secrets") == (False, "No Object name found")
    assert decide("/api/v1/secrets") == (False, "can only read namespaced object of this type")
    assert decide("/api/v1/namespaces/ns/secrets/mine", "DELETE") == (
        False, "can only read resources of this type")
    assert decide("/api/v1/pods", fieldSelector="spec.nodeName=n1") == (True, "")
    assert decide("/api/v1/pods", fieldSelector="spec.nodeName!=n1") == (
        False, "can only list/watch pods with spec.nodeName field selector")
    assert decide("/api/v1/pods", fieldSelector="spec.nodeName=n2")[0] is False
    assert decide("/api/v1/namespaces/ns/pods/web") == (True, "")
    assert decide("/api/v1/namespaces/ns/pods/other")[0] is False
    assert decide("/api/v1/nodes/n1") == (True, "")
    assert decide("/api/v1/nodes/n2") == (
        False, "node 'n1' cannot read 'n2', only its own Node object")
    assert decide("/api/v1/nodes/n1", "DELETE") == (False, "")
    assert decide("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2", "PUT") == (
        False, "can only access node lease with the same name as the requesting node")
    assert decide("/apis/coordination.k8s.io/v1/namespaces/default/leases/n1")[0] is False
    # Everything else by the system:node role's rules.
    assert decide("/api/v1/namespaces/ns/events", "POST") == (True, "")
    assert decide("/api/v1/services") == (True, "")
    assert decide("/apis/apps/v1/deployments")[0] is False


def test_labels_a_node_may_not_set_on_itself() -> None:
    from pinnace.apiserver.admission.noderestriction import forbidden_labels

    assert forbidden_labels({
        "kubernetes.io/hostname", "topology.kubernetes.io/zone", "node.kubernetes.io/exclude-x",
        "sub.kubelet.kubernetes.io/x", "example.com/disk", "plain"}) == []
    assert forbidden_labels({
        "node-restriction.kubernetes.io/trusted", "x.node-restriction.kubernetes.io/y",
        "node-role.kubernetes.io/control-plane", "k8s.io/anything", "kubernetes.io/role"}) == [
        "k8s.io/anything", "kubernetes.io/role", "node-restriction.kubernetes.io/trusted",
        "node-role.kubernetes.io/control-plane", "x.node-restriction.kubernetes.io/y"]
