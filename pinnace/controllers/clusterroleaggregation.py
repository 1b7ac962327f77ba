"""ClusterRole aggregation (upstream pkg/controller/clusterroleaggregation):
a ClusterRole with an aggregationRule is kept holding the rules of every
ClusterRole its selectors match, so labelling a role
``rbac.authorization.k8s.io/aggregate-to-view: "true"`` extends view.

Any ClusterRole change may change what an aggregated role gathers, so every
change queues every aggregated role; each is rewritten only when its rules
differ (with a resourceVersion precondition: a conflict is retried with the
informer's newer copy)."""

from __future__ import annotations

from typing import Any

from pinnace.api.aggregation import aggregated_rules
from pinnace.client import ApiError

from .base import Context, Controller

Obj = dict[str, Any]
GROUP_VERSION = "rbac.authorization.k8s.io/v1"


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    event_source = "clusterrole-aggregation-controller"
    workers = 1

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.roles = ctx.informers.informer(GROUP_VERSION, "clusterroles")
        self.api = self.client.resource(GROUP_VERSION, "clusterroles")

    def setup(self) -> None:
        self.roles.add_handler(self._changed, lambda old, new: self._changed(new),
                               self._changed)

    def _changed(self, _role: Obj) -> None:
        for role in self.roles.objects():
            if role.get("aggregationRule"):
                self.enqueue(role)

    async def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregated_rules(role, self.roles.objects())
        if rules == (role.get("rules") or []):
            return
        meta = role["metadata"]
        try:
            await self.api.patch(meta["name"], {"metadata": {
                "resourceVersion": meta["resourceVersion"]}, "rules": rules})
        except ApiError as e:
            if not e.not_found:
                raise


CONTROLLERS: dict[str, type[Controller]] = {
    "clusterrole-aggregation": ClusterRoleAggregationController}
