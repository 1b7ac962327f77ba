"""NodeRestriction: a node changes only its own Node, Lease and pods.

The Node authorizer lets a kubelet create, update and delete Nodes and pods
at all; this plugin, as upstream's plugin/pkg/admission/noderestriction,
narrows that to what is the node's own, looking at the objects themselves:
its own Node (without touching its taints or the labels that steer
workloads), the status of pods bound to it, mirror pods that reference
nothing secret, tokens for its own pods, and its own Lease.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .. import status
from ..nodeauthz import NODE_LEASE_NAMESPACE, NODE_USER_PREFIX, node_identity
from ..nodegraph import pod_refs
from . import CREATE, DELETE, UPDATE, Attributes

Obj = dict[str, Any]
# Reads an object for the plugin: (resource, namespace, name) -> it, or None.
Reader = Callable[[str, str, str], Awaitable[Obj | None]]

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# The kubernetes.io labels a kubelet may set on its own Node (kubelet's IsKubeletLabel).
_KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"})
_KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _label_namespace(key: str) -> str:
    prefix, sep, _ = key.partition("/")
    return prefix if sep else ""


def _in_namespace(namespace: str, suffix: str) -> bool:
    return namespace == suffix or namespace.endswith("." + suffix)


def forbidden_labels(modified: set[str]) -> list[str]:
    """The labels a node may not add, change or remove on itself: the
    node-restriction ones, and kubernetes.io / k8s.io ones a kubelet does not own."""
    out = []
    for key in modified:
        ns = _label_namespace(key)
        restricted = _in_namespace(ns, "node-restriction.kubernetes.io")
        kubelet_owned = key in _KUBELET_LABELS or any(
            _in_namespace(ns, allowed) for allowed in _KUBELET_LABEL_NAMESPACES)
        kubernetes = any(_in_namespace(ns, k) for k in ("kubernetes.io", "k8s.io"))
        if restricted or (kubernetes and not kubelet_owned):
            out.append(key)
    return sorted(out)


def _modified(new: dict[str, str], old: dict[str, str]) -> set[str]:
    return {k for k in set(new) | set(old) if new.get(k) != old.get(k)}


def _labels(obj: Obj | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


class NodeRestriction:
    resources = frozenset({("", "pods"), ("", "nodes"), ("", "persistentvolumeclaims"),
                           ("", "serviceaccounts"), ("coordination.k8s.io", "leases")})

    def __init__(self, read: Reader):
        self.read = read

    async def validate(self, a: Attributes) -> None:
        node, is_node = node_identity(a.user)
        if not is_node:
            return
        if not node:
            raise a.forbidden(f'could not determine node from user "{NODE_USER_PREFIX}"')
        gr = (a.info.group, a.info.resource)
        if gr == ("", "pods"):
            if a.subresource == "":
                await self._pod(node, a)
            elif a.subresource == "status":
                self._pod_status(node, a)
            elif a.subresource == "eviction":
                self._pod_eviction(node, a)
            else:
                raise a.forbidden(f'unexpected pod subresource "{a.subresource}", only '
                                  "'status' and 'eviction' are allowed")
        elif gr == ("", "nodes"):
            self._node(node, a)
        elif gr == ("", "persistentvolumeclaims"):
            if a.subresource != "status":
                raise a.forbidden("may only update PVC status")
            self._claim_status(node, a)
        elif gr == ("", "serviceaccounts"):
            await self._token(node, a)
        elif gr == ("coordination.k8s.io", "leases"):
            self._lease(node, a)

    async def _pod(self, node: str, a: Attributes) -> None:
        if a.operation == DELETE:
            if ((a.old or {}).get("spec") or {}).get("nodeName") != node:
                raise a.forbidden(f'node "{node}" can only delete pods with spec.nodeName set '
                                  "to itself")
            return
        if a.operation != CREATE:
            raise a.forbidden(f'unexpected operation "{a.operation}", node "{node}" can only '
                              "create and delete mirror pods")
        pod = a.obj or {}
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if MIRROR_ANNOTATION not in (meta.get("annotations") or {}):
            raise a.forbidden(f'pod does not have "{MIRROR_ANNOTATION}" annotation, node '
                              f'"{node}" can only create mirror pods')
        if spec.get("nodeName") != node:
            raise a.forbidden(f'node "{node}" can only create pods with spec.nodeName set to '
                              "itself")
        owners = meta.get("ownerReferences") or []
        if len(owners) > 1:
            raise a.forbidden(f'node "{node}" can only create pods with a single owner '
                              "reference set to itself")
        owner = owners[0] if owners else {}
        if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != \
                ("v1", "Node", node):
            raise a.forbidden(f'node "{node}" can only create pods with an owner reference set '
                              "to itself")
        if owner.get("controller") is not True:
            raise a.forbidden(f'node "{node}" can only create pods with a controller owner '
                              "reference set to itself")
        if owner.get("blockOwnerDeletion") is True:
            raise a.forbidden(f'node "{node}" must not set blockOwnerDeletion on an owner '
                              "reference")
        node_obj = await self.read("nodes", "", node)
        if node_obj is None:
            raise status.not_found("nodes", "", node)
        uid = node_obj["metadata"].get("uid")
        if owner.get("uid") != uid:
            raise a.forbidden(f"node {node} UID mismatch: expected {owner.get('uid')} got {uid}")
        # A mirror pod may reference nothing the node could then read through it.
        if spec.get("serviceAccountName"):
            raise a.forbidden(f'node "{node}" can not create pods that reference a service '
                              "account")
        kinds = {kind for kind, _, _ in pod_refs(pod)}
        for kind, plural in (("secret", "secrets"), ("configmap", "configmaps")):
            if kind in kinds:
                raise a.forbidden(f'node "{node}" can not create pods that reference {plural}')
        for vol in spec.get("volumes") or ():
            for src in ((vol.get("projected") or {}).get("sources") or ()):
                if isinstance(src, dict) and src.get("clusterTrustBundle"):
                    raise a.forbidden(f'node "{node}" can not create pods that reference '
                                      "clustertrustbundles")
        if any(isinstance(v, dict) and v.get("persistentVolumeClaim")
               for v in spec.get("volumes") or ()):
            raise a.forbidden(f'node "{node}" can not create pods that reference '
                              "persistentvolumeclaims")

    def _pod_status(self, node: str, a: Attributes) -> None:
        if a.operation != UPDATE:
            raise a.forbidden(f'unexpected operation "{a.operation}"')
        if ((a.old or {}).get("spec") or {}).get("nodeName") != node:
            raise a.forbidden(f'node "{node}" can only update pod status for pods with '
                              "spec.nodeName set to itself")
        if _labels(a.obj) != _labels(a.old):
            raise a.forbidden(f'node "{node}" cannot update labels through pod status')
        if _claim_statuses(a.obj) != _claim_statuses(a.old):
            raise a.forbidden(f'node "{node}" cannot update resource claim statues')

    def _pod_eviction(self, node: str, a: Attributes) -> None:
        # The handler reads the pod and passes it as the old object.
        if a.old is None:
            raise a.forbidden("could not determine pod from request data")
        if (a.old.get("spec") or {}).get("nodeName") != node:
            raise a.forbidden(f"node {node} can only evict pods with spec.nodeName set to itself")

    def _node(self, node: str, a: Attributes) -> None:
        name = a.name or ((a.obj or {}).get("metadata") or {}).get("name") or ""
        if name != node:
            raise a.forbidden(f'node "{node}" is not allowed to modify node "{name}"')
        spec = (a.obj or {}).get("spec") or {}
        if a.operation == CREATE:
            if spec.get("configSource") is not None:
                raise a.forbidden(f'node "{node}" is not allowed to create pods with a non-nil '
                                  "configSource")
            bad = forbidden_labels(set(_labels(a.obj)))
            if bad:
                raise a.forbidden(f'node "{node}" is not allowed to set the following labels: '
                                  f"{', '.join(bad)}")
        elif a.operation == UPDATE:
            old_spec = (a.old or {}).get("spec") or {}
            if spec.get("configSource") is not None and \
                    spec.get("configSource") != old_spec.get("configSource"):
                raise a.forbidden(f'node "{node}" is not allowed to update configSource to a new '
                                  "non-nil configSource")
            if (spec.get("taints") or []) != (old_spec.get("taints") or []):
                raise a.forbidden(f'node "{node}" is not allowed to modify taints')
            bad = forbidden_labels(_modified(_labels(a.obj), _labels(a.old)))
            if bad:
                raise a.forbidden(f"is not allowed to modify labels: {', '.join(bad)}")

    def _claim_status(self, node: str, a: Attributes) -> None:
        if a.operation != UPDATE:
            raise a.forbidden(f'unexpected operation "{a.operation}"')

        def comparable(pvc: Obj | None) -> Obj:
            out = dict(pvc or {})
            meta = dict(out.get("metadata") or {})
            for key in ("resourceVersion", "managedFields"):
                meta.pop(key, None)
            st = dict(out.get("status") or {})
            for key in ("capacity", "conditions", "allocatedResourceStatuses",
                        "allocatedResources"):
                st.pop(key, None)
            return {**out, "metadata": meta, "status": st}

        if comparable(a.obj) != comparable(a.old):
            raise a.forbidden(f'node "{node}" is not allowed to update fields other than '
                              "status.capacity and status.conditions")

    async def _token(self, node: str, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource != "token":
            return
        ref = ((a.obj or {}).get("spec") or {}).get("boundObjectRef") or {}
        if not isinstance(ref, dict) or ref.get("apiVersion") != "v1" or \
                ref.get("kind") != "Pod" or not ref.get("name"):
            raise a.forbidden("node requested token not bound to a pod")
        if not ref.get("uid"):
            raise a.forbidden("node requested token with a pod binding without a uid")
        pod = await self.read("pods", a.namespace, ref["name"])
        if pod is None:
            return  # the token request answers NotFound itself
        if ref["uid"] != pod["metadata"].get("uid"):
            raise a.forbidden(f"the UID in the bound object reference ({ref['uid']}) does not "
                              "match the UID in record. The object might have been deleted and "
                              "then recreated")
        if (pod.get("spec") or {}).get("nodeName") != node:
            raise a.forbidden("node requested token bound to a pod scheduled on a different "
                              "node")

    def _lease(self, node: str, a: Attributes) -> None:
        if a.namespace != NODE_LEASE_NAMESPACE:
            raise a.forbidden(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system '
                              "namespace")
        name = ((a.obj or {}).get("metadata") or {}).get("name") if a.operation == CREATE \
            else a.name
        if name != node:
            raise a.forbidden("can only access node lease with the same name as the "
                              "requesting node")


def _claim_statuses(pod: Obj | None) -> list[tuple[Any, Any]]:
    return [(s.get("name"), s.get("resourceClaimName"))
            for s in ((pod or {}).get("status") or {}).get("resourceClaimStatuses") or ()
            if isinstance(s, dict)]
