"""The review resources: create-only questions the server answers about
identity and permission (`kubectl auth whoami`, `kubectl auth can-i`,
`can-i --list`, and the SubjectAccessReviews other servers send), never
stored. Access questions go to the same authorizer requests meet.
"""

from __future__ import annotations

from typing import Any

from pinnace.api.resources import ResourceInfo

from . import status
from .authn import Authenticator, User
from .authz import Authorizer
from .requestinfo import RequestInfo


def _user_info(user: User) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    return info


async def answer(info: ResourceInfo, namespace: str | None, body: dict[str, Any], user: User,
                 authn: Authenticator, authz: Authorizer) -> dict[str, Any]:
    out = dict(body)
    out["metadata"] = dict(out.get("metadata") or {})
    if namespace:
        out["metadata"]["namespace"] = namespace
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
            subject = user
        else:
            subject = User(spec.get("user", ""), spec.get("uid", ""),
                           tuple(spec.get("groups") or ()))
        resource = spec.get("resourceAttributes") or {}
        non_resource = spec.get("nonResourceAttributes") or {}
        if not isinstance(resource, dict) or not isinstance(non_resource, dict) or \
                bool(resource) == bool(non_resource):
            raise status.bad_request("exactly one of nonResourceAttributes or "
                                     "resourceAttributes must be specified")
        if resource:
            if kind == "LocalSubjectAccessReview" and \
                    resource.get("namespace", "") != out["metadata"].get("namespace", ""):
                raise status.bad_request("spec.resourceAttributes.namespace must match "
                                         "metadata.namespace")
            def field(key: str) -> str:
                return str(resource.get(key, ""))

            attrs = RequestInfo(field("verb"), "", True, field("group"), field("version"),
                                field("namespace"), field("resource"), field("subresource"),
                                field("name"))
        else:
            attrs = RequestInfo(str(non_resource.get("verb", "")),
                                str(non_resource.get("path", "")))
        allowed, reason = await authz.decide(subject, attrs)
        out["status"] = {"allowed": allowed}
        if reason:
            out["status"]["reason"] = reason
    elif kind == "SelfSubjectRulesReview":
        resource_rules: list[dict[str, Any]] = []
        non_resource_rules: list[dict[str, Any]] = []
        rules, incomplete = authz.rules_for(user, spec.get("namespace", ""))
        for rule in rules:
            if rule.get("nonResourceURLs"):
                non_resource_rules.append({"verbs": rule.get("verbs") or [],
                                           "nonResourceURLs": rule["nonResourceURLs"]})
            else:
                entry = {"verbs": rule.get("verbs") or []}
                entry.update({k: rule[k] for k in ("apiGroups", "resources", "resourceNames")
                              if rule.get(k)})
                resource_rules.append(entry)
        out["status"] = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                         "incomplete": bool(incomplete)}
        if incomplete:
            out["status"]["evaluationError"] = incomplete
    return out
