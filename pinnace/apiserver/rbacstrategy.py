"""Escalation and bind prevention: a user who may write Roles and bindings
still cannot grant what it does not hold, as upstream's RBAC storage checks.

- A Role or ClusterRole is written only by a user holding every permission
  in it (in the role's namespace, or cluster-wide), or allowed the
  ``escalate`` verb on it. An aggregationRule can gather any permission, so
  it takes full authority or ``escalate``.
- A binding is written only by a user allowed ``bind`` on the role it names,
  or holding every permission of that role where the binding applies.
"""

from __future__ import annotations

import json
from typing import Any

from pinnace.api.resources import ResourceInfo

from . import status
from .authn import User
from .authz import PRIVILEGED_GROUP, Authorizer
from .rbac import Rule, uncovered
from .requestinfo import RequestInfo
from .strategy import Strategy

GROUP = "rbac.authorization.k8s.io"
FULL_AUTHORITY: list[Rule] = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                              {"verbs": ["*"], "nonResourceURLs": ["*"]}]


def _go_strings(values: list[str]) -> str:
    """A list of strings as Go's %q prints a []string."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def _compact(rule: Rule) -> str:
    """A rule as upstream's PolicyRule.CompactString writes it."""
    parts = [f"{label}:{_go_strings(rule[key])}" for key, label in (
        ("apiGroups", "APIGroups"), ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"), ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs")) if rule.get(key)]
    return "{" + ", ".join(parts) + "}"


class RBACStrategy(Strategy):
    def __init__(self, authz: Authorizer):
        self.authz = authz

    async def authorize_content(self, info: ResourceInfo, obj: dict[str, Any],
                                user: Any) -> None:
        if not isinstance(user, User) or PRIVILEGED_GROUP in user.groups:
            return
        meta = obj.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace", "") if info.namespaced else ""
        if info.resource in ("roles", "clusterroles"):
            if self._may(user, "escalate", info.resource, ns, name):
                return
            wanted = list(obj.get("rules") or [])
            if obj.get("aggregationRule"):
                wanted = FULL_AUTHORITY
        else:
            ref = obj.get("roleRef") or {}
            role_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if self._may(user, "bind", role_resource, ns, ref.get("name", "")):
                return
            rbac = self.authz.rbac
            found = None if rbac is None else rbac.role_rules(ref.get("kind", ""), ns,
                                                              ref.get("name", ""))
            if found is None:
                raise status.forbidden(
                    f'{info.resource}.{GROUP} "{name}" is forbidden: {ref.get("kind")} '
                    f'"{ref.get("name")}" not found, and user "{user.name}" may not bind it',
                    info.resource, GROUP, name)
            wanted = found
        missing = uncovered(self.authz.rules_for(user, ns)[0], wanted)
        if missing:
            raise status.forbidden(
                f'{info.resource}.{GROUP} "{name}" is forbidden: user "{user.name}" '
                f"(groups={_go_strings(list(user.groups))}) is attempting to grant RBAC "
                "permissions not currently held:\n" + "\n".join(_compact(r) for r in missing),
                info.resource, GROUP, name)

    async def after_create(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        self._written(obj)

    async def after_update(self, info: ResourceInfo, new: dict[str, Any],
                           old: dict[str, Any]) -> None:
        self._written(new)

    def _written(self, obj: dict[str, Any]) -> None:
        # Refusals wait for RBAC's watch to reach this write (authz.decide).
        if self.authz.rbac is not None:
            self.authz.rbac.expect(obj["kind"], int(obj["metadata"].get("resourceVersion") or 0))

    def _may(self, user: User, verb: str, resource: str, ns: str, name: str) -> bool:
        return self.authz.allowed(user, RequestInfo(verb, "", True, GROUP, "v1", ns, resource,
                                                    "", name))[0]
