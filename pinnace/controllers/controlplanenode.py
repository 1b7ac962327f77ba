"""The node `pinnace server` runs its own agent on is labelled as the
control plane's (``node-role.kubernetes.io/control-plane``), as k3s and
kubeadm label theirs: `kubectl get nodes` shows the role, and manifests
that place things on (or keep them off) control-plane nodes find it.

A kubelet may not set node-role labels on itself (NodeRestriction), so
the server does it, once when the node first appears to this process. A
label an admin removes afterwards stays removed until the server restarts,
as with k3s.
"""

from __future__ import annotations

from typing import Any

from pinnace.client import ApiError

from .base import Context, Controller

Obj = dict[str, Any]
ROLE_LABEL = "node-role.kubernetes.io/control-plane"


class ControlPlaneNodeController(Controller):
    name = "control-plane-node"
    workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.node_name = str(ctx.options.get("control_plane_node") or "")
        self.nodes = ctx.informers.informer("v1", "nodes")
        self.node_api = self.client.resource("v1", "nodes")
        self._done = False

    def setup(self) -> None:
        if self.node_name:
            self.nodes.add_handler(self.enqueue, lambda old, new: self.enqueue(new), None)

    def enqueue(self, obj: Obj) -> None:
        if not self._done and obj["metadata"]["name"] == self.node_name:
            super().enqueue(obj)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None or self._done:
            return
        if ROLE_LABEL not in (node["metadata"].get("labels") or {}):
            try:
                await self.node_api.patch(key, {"metadata": {"labels": {ROLE_LABEL: "true"}}})
            except ApiError as e:
                if not e.not_found:
                    raise
                return
            self.log.info("labelled node %s as the control plane's", key)
        self._done = True


CONTROLLERS = {ControlPlaneNodeController.name: ControlPlaneNodeController}
