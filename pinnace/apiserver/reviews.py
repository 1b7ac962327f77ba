"""The review resources: create-only questions the server answers about
identity and permission (`kubectl auth whoami`, `kubectl auth can-i`), never
stored.

Until RBAC lands, every authenticated user may do everything, so access
reviews answer "allowed" for authenticated subjects; the answers go through
``Authorizer`` so that RBAC only has to replace it.
"""

from __future__ import annotations

from typing import Any

from pinnace.api.resources import ResourceInfo

from . import status
from .authn import Authenticator, User


class Authorizer:
    """Allows every authenticated user everything (no RBAC yet)."""

    def allowed(self, user: str, groups: list[str], attributes: dict[str, Any]) -> tuple[bool, str]:
        if "system:authenticated" in groups or "system:masters" in groups:
            return True, "pinnace allows authenticated users everything (no RBAC yet)"
        return False, "not authenticated"


def _user_info(user: User) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    return info


async def answer(info: ResourceInfo, body: dict[str, Any], user: User, authn: Authenticator,
                 authz: Authorizer) -> dict[str, Any]:
    out = dict(body)
    out.setdefault("metadata", {})
    out["apiVersion"], out["kind"] = info.group_version, info.kind
    spec = body.get("spec") or {}
    kind = info.kind
    if kind == "SelfSubjectReview":
        out["status"] = {"userInfo": _user_info(user)}
    elif kind == "TokenReview":
        found = await authn.user_for_bearer(spec.get("token") or "")
        out["status"] = ({"authenticated": True, "user": _user_info(found)} if found
                         else {"authenticated": False, "error": "invalid bearer token"})
    elif kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
        if kind == "SelfSubjectAccessReview":
            name, groups = user.name, list(user.groups)
        else:
            name, groups = spec.get("user", ""), list(spec.get("groups") or [])
            if name or groups:
                groups.append("system:authenticated")
        attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
        if not (spec.get("resourceAttributes") or spec.get("nonResourceAttributes")):
            raise status.bad_request("exactly one of nonResourceAttributes or "
                                     "resourceAttributes must be specified")
        allowed, reason = authz.allowed(name, groups, attrs)
        out["status"] = {"allowed": allowed, "reason": reason}
    elif kind == "SelfSubjectRulesReview":
        out["status"] = {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                            "resources": ["*"]}],
                         "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                         "incomplete": False}
    return out
