"""Authorization: may this user do what this request asks?

Members of system:masters may do anything (upstream's privileged-group
authorizer, which answers before any other); a node gets what the Node
authorizer gives it; everyone, nodes included, gets what RBAC grants. A
refusal is the 403 Status kube-apiserver writes, word for word, because
kubectl and client libraries show it to users as is.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from . import status
from .authn import User
from .nodeauthz import NodeAuthorizer, node_identity
from .rbac import RBAC, Rule
from .requestinfo import RequestInfo

log = logging.getLogger("pinnace.apiserver.authz")

PRIVILEGED_GROUP = "system:masters"


class Authorizer:
    def __init__(self, rbac: RBAC | None, nodes: NodeAuthorizer | None = None):
        self.rbac = rbac
        self.nodes = nodes

    def allowed(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        if PRIVILEGED_GROUP in user.groups:
            return True, ""
        why = ""
        if self.nodes is not None:
            node, is_node = node_identity(user)
            if is_node:
                ok, why = self.nodes.authorize(node, info)
                if ok:
                    return True, ""
        if self.rbac is None:
            return False, why or "no authorizer"
        ok, reason = self.rbac.authorize(user, info)
        # Refused by every authorizer: the Node authorizer's reason is the one told.
        return ok, reason if ok else why

    def rules_for(self, user: User, namespace: str) -> tuple[list[Rule], str]:
        """What ``user`` may do in ``namespace`` as rules, and why that list is
        incomplete ("" when it is not): the Node authorizer cannot list what
        it allows, which depends on the pods bound to the node (upstream's
        NodeAuthorizer.RulesFor says the same)."""
        rules = [] if self.rbac is None else self.rbac.rules_for(user, namespace)
        if self.nodes is not None and node_identity(user)[1]:
            return rules, "node authorizer does not support user rule resolution"
        return rules, ""

    async def decide(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        """``allowed``, but a refusal is given only once RBAC has seen every
        change this server wrote: the watch feeding it may lag a binding
        created a moment ago by the same client."""
        ok, reason = self.allowed(user, info)
        if not ok and self.rbac is not None and self.rbac.behind and \
                await self.rbac.caught_up():
            ok, reason = self.allowed(user, info)
        if not ok and self.nodes is not None and node_identity(user)[1]:
            # A pod bound a moment ago may not have reached the graph yet.
            await self.nodes.graph.caught_up()
            ok, reason = self.allowed(user, info)
        return ok, reason

    async def check(self, user: User, info: RequestInfo) -> None:
        """Raise the Forbidden Status unless ``user`` may do ``info``."""
        ok, reason = await self.decide(user, info)
        if not ok:
            self.refuse(user, info, reason)

    def refuse(self, user: User, info: RequestInfo, reason: str) -> NoReturn:
        """Raise the Forbidden Status for a refusal ``decide`` gave."""
        # A pinnace component refused is a gap in the default policy: say so.
        level = logging.WARNING if _component(user) else logging.DEBUG
        log.log(level, "forbidden: %s (groups %s): %s", user.name, ",".join(user.groups), info)
        raise forbidden(user, info, reason)


def _component(user: User) -> bool:
    return "system:nodes" in user.groups or user.name.startswith(
        ("system:kube-", "system:pinnace-"))


def forbidden_message(user: User, info: RequestInfo) -> str:
    if not info.resource_request:
        return f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    where = (f'in the namespace "{info.namespace}"' if info.namespace
             else "at the cluster scope")
    return (f'User "{user.name}" cannot {info.verb} resource "{resource}" in API group '
            f'"{info.api_group}" {where}')


def forbidden(user: User, info: RequestInfo, reason: str = "") -> status.APIError:
    message = forbidden_message(user, info)
    if reason:
        message = f"{message}: {reason}"
    if not info.resource_request:
        return status.APIError(403, "Forbidden", f"forbidden: {message}", {})
    qualified = f"{info.resource}.{info.api_group}" if info.api_group else info.resource
    head = f'{qualified} "{info.name}"' if info.name else qualified
    return status.forbidden(f"{head} is forbidden: {message}", info.resource, info.api_group,
                            info.name)
