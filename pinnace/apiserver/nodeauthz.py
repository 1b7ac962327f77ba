"""The Node authorizer: a kubelet reaches what its own pods need, and no more.

A node is a user named ``system:node:NAME`` in the group ``system:nodes``
(its client certificate says so). As upstream's node authorizer does, it may
read a Secret, ConfigMap, claim, volume or ServiceAccount token only when a
pod bound to it uses that object (see nodegraph), read only its own Node and
its own pods, and renew only its own Lease. Everything else a kubelet does is
judged by the static rules of the system:node role. A refusal here is "no
opinion": RBAC may still allow the request, as upstream chains them.
"""

from __future__ import annotations

from .authn import User
from .nodegraph import NodeGraph
from .rbac import Rule, rule_allows
from .requestinfo import RequestInfo, field_equals

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"

Decision = tuple[bool, str]  # allowed, and why not
_NO = (False, "")

# Resources read through the graph: the resource, the graph's name for it.
_GRAPH_KINDS = {("", "secrets"): "secret", ("", "configmaps"): "configmap",
                ("", "persistentvolumeclaims"): "pvc", ("", "persistentvolumes"): "pv",
                ("resource.k8s.io", "resourceclaims"): "resourceclaim",
                ("", "serviceaccounts"): "serviceaccount", ("", "pods"): "pod"}


def node_identity(user: User | None) -> tuple[str, bool]:
    """(node name, is a node), as upstream's NodeIdentifier: both the user
    name prefix and the group are needed."""
    if user is None or not user.name.startswith(NODE_USER_PREFIX) or \
            NODES_GROUP not in user.groups:
        return "", False
    return user.name[len(NODE_USER_PREFIX):], True


class NodeAuthorizer:
    def __init__(self, graph: NodeGraph, node_rules: list[Rule]):
        self.graph = graph
        self.node_rules = node_rules

    def authorize(self, node: str, info: RequestInfo) -> Decision:
        if not node:
            return False, f'unknown node for user "{NODE_USER_PREFIX}"'
        if info.resource_request:
            gr = (info.api_group, info.resource)
            if gr in (("", "secrets"), ("", "configmaps")):
                return self._read_namespaced(node, info)
            if gr == ("", "persistentvolumeclaims"):
                if info.subresource == "status":
                    return self._status_update(node, info)
                return self._get(node, info)
            if gr in (("", "persistentvolumes"), ("resource.k8s.io", "resourceclaims")):
                return self._get(node, info)
            if gr == ("", "serviceaccounts"):
                return self._create_token(node, info)
            if gr == ("coordination.k8s.io", "leases"):
                return self._lease(node, info)
            if gr == ("", "nodes"):
                return self._node(node, info)
            if gr == ("", "pods"):
                return self._pod(node, info)
        if any(rule_allows(r, info) for r in self.node_rules):
            return True, ""
        return _NO

    # Each check mirrors one of upstream's, with its reason for a refusal.

    def _related(self, node: str, info: RequestInfo) -> Decision:
        if not info.name:
            return False, "No Object name found"
        kind = _GRAPH_KINDS[(info.api_group, info.resource)]
        if self.graph.related(node, kind, info.namespace, info.name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"

    def _read_namespaced(self, node: str, info: RequestInfo) -> Decision:
        if info.verb not in ("get", "list", "watch"):
            return False, "can only read resources of this type"
        if info.subresource:
            return False, "cannot read subresource"
        if not info.namespace:
            return False, "can only read namespaced object of this type"
        return self._related(node, info)

    def _get(self, node: str, info: RequestInfo) -> Decision:
        if info.verb != "get":
            return False, "can only get individual resources of this type"
        if info.subresource:
            return False, "cannot get subresource"
        return self._related(node, info)

    def _status_update(self, node: str, info: RequestInfo) -> Decision:
        if info.verb not in ("update", "patch"):
            return False, "can only get/update/patch this type"
        return self._related(node, info)

    def _create_token(self, node: str, info: RequestInfo) -> Decision:
        if info.verb != "create" or not info.name:
            return False, "can only create tokens for individual service accounts"
        if info.subresource != "token":
            return False, "can only create token subresource of serviceaccount"
        return self._related(node, info)

    def _lease(self, node: str, info: RequestInfo) -> Decision:
        if info.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if info.namespace != NODE_LEASE_NAMESPACE:
            return False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        # On create the name is in the body: NodeRestriction checks it there.
        if info.verb != "create" and info.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""

    def _node(self, node: str, info: RequestInfo) -> Decision:
        if info.subresource == "":
            if info.verb in ("create", "update", "patch"):
                return True, ""  # NodeRestriction keeps it to its own Node
            if info.verb in ("get", "list", "watch"):
                # By name, not the graph: a kubelet reads its Node before creating it.
                if info.name == node:
                    return True, ""
                if not info.name:
                    return False, f"node '{node}' cannot read all nodes, only its own Node object"
                return False, f"node '{node}' cannot read '{info.name}', only its own Node object"
        elif info.subresource == "status" and info.verb in ("update", "patch"):
            return True, ""
        return _NO

    def _pod(self, node: str, info: RequestInfo) -> Decision:
        if info.subresource == "":
            if info.verb == "get":
                return self._get(node, info)
            if info.verb in ("list", "watch"):
                if field_equals(info.field_selector, "spec.nodeName") == node:
                    return True, ""
                if info.name:
                    return self._related(node, info)
                return False, "can only list/watch pods with spec.nodeName field selector"
            if info.verb in ("create", "delete"):
                return True, ""  # mirror pods; NodeRestriction checks which
        elif info.subresource == "status" and info.verb in ("update", "patch"):
            return True, ""
        elif info.subresource == "eviction" and info.verb == "create":
            return True, ""
        return _NO
