"""A node's heartbeat: its Lease in kube-node-lease, renewed as the kubelet
renews it (the node lifecycle controller reads Leases for liveness).
Shared by the real agent and the simulated nodes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pinnace.client import ApiError
from pinnace.client.rest import ResourceClient

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _owner(node: str, node_uid: str) -> list[Obj]:
    return [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]


def new_lease(node: str, node_uid: str, duration: int) -> Obj:
    meta: Obj = {"name": node, "namespace": LEASE_NAMESPACE}
    if node_uid:
        meta["ownerReferences"] = _owner(node, node_uid)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration,
                     "renewTime": micro_now()}}


async def renew(leases: ResourceClient, lease: Obj | None, node: str, node_uid: str,
                duration: int) -> Obj | None:
    """Renew (or create) the node's Lease, with one request in the usual case:
    ``lease`` is the one the last renewal returned (None: look it up). Returns
    the Lease as stored, for the next renewal (None if it kept changing under
    us: the next renewal looks it up again)."""
    for _ in range(2):
        if lease is None:
            try:
                lease = await leases.get(node, LEASE_NAMESPACE)
            except ApiError as e:
                if not e.not_found:
                    raise
                return await leases.create(new_lease(node, node_uid, duration))  # type: ignore[no-any-return]
        body = {**lease, "spec": {**(lease.get("spec") or {}), "holderIdentity": node,
                                  "leaseDurationSeconds": duration, "renewTime": micro_now()}}
        refs = lease["metadata"].get("ownerReferences") or []
        if node_uid and not any(r.get("uid") == node_uid for r in refs):
            # Owned by this Node (a Lease left from a deleted one is taken over).
            body["metadata"] = {**lease["metadata"], "ownerReferences": _owner(node, node_uid)}
        try:
            return await leases.replace(body, LEASE_NAMESPACE)  # type: ignore[no-any-return]
        except ApiError as e:
            lease = None
            if not (e.conflict or e.not_found):
                raise
    return None
