"""Which writes a webhook rule matches, and how a refusal reads."""

from __future__ import annotations

from pinnace.api.resources import ResourceInfo
from pinnace.apiserver.admission import Attributes
from pinnace.apiserver.admission.webhooks import _denied, _rule_matches

PODS = ResourceInfo("", "v1", "pods", "Pod", True)
NAMESPACES = ResourceInfo("", "v1", "namespaces", "Namespace", False)
DEPLOYMENTS = ResourceInfo("apps", "v1", "deployments", "Deployment", True)


def attrs(info: ResourceInfo, op: str = "CREATE", sub: str = "", ns: str = "default") -> Attributes:
    return Attributes(op, info, ns, "x", {}, None, None, sub)


def rule(resources: list[str], scope: str = "*", ops: list[str] | None = None,
         groups: list[str] | None = None) -> dict[str, object]:
    return {"operations": ops or ["CREATE"], "apiGroups": groups or [""], "apiVersions": ["v1"],
            "resources": resources, "scope": scope}


def test_resources_and_subresources() -> None:
    assert _rule_matches(rule(["pods"]), attrs(PODS))
    assert not _rule_matches(rule(["pods"]), attrs(PODS, "UPDATE", "status"))
    assert _rule_matches(rule(["pods/status"]), attrs(PODS, "CREATE", "status"))
    assert _rule_matches(rule(["pods/*"]), attrs(PODS, "CREATE", "status"))
    assert _rule_matches(rule(["pods/*"]), attrs(PODS))
    assert _rule_matches(rule(["*"]), attrs(PODS))
    assert not _rule_matches(rule(["*"]), attrs(PODS, "CREATE", "eviction"))
    assert _rule_matches(rule(["*/*"]), attrs(PODS, "CREATE", "eviction"))
    assert _rule_matches(rule(["*/eviction"]), attrs(PODS, "CREATE", "eviction"))


def test_operations_groups_and_scope() -> None:
    assert not _rule_matches(rule(["pods"], ops=["UPDATE"]), attrs(PODS))
    assert _rule_matches(rule(["pods"], ops=["*"]), attrs(PODS, "DELETE"))
    assert not _rule_matches(rule(["deployments"]), attrs(DEPLOYMENTS))
    assert _rule_matches(rule(["deployments"], groups=["*"]), attrs(DEPLOYMENTS))
    assert not _rule_matches(rule(["pods"], scope="Cluster"), attrs(PODS))
    assert _rule_matches(rule(["pods"], scope="Namespaced"), attrs(PODS))
    # A Namespace is cluster-scoped, though its requests carry its name as namespace.
    assert _rule_matches(rule(["namespaces"], scope="Cluster"), attrs(NAMESPACES, ns="x"))
    assert not _rule_matches(rule(["namespaces"], scope="Namespaced"), attrs(NAMESPACES, ns="x"))


def test_refusals_read_as_upstream_words_them() -> None:
    e = _denied("deny.example.com", {"code": 403, "reason": "Forbidden", "message": "no"})
    assert (e.code, e.reason, e.message) == (
        403, "Forbidden", 'admission webhook "deny.example.com" denied the request: no')
    e = _denied("deny.example.com", {"code": 200})
    assert (e.code, e.message) == (
        400, 'admission webhook "deny.example.com" denied the request without explanation')
    assert _denied("d.example.com", {"reason": "Nope"}).message.endswith("request: Nope")
