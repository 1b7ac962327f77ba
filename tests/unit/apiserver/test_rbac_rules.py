"""RBAC rule matching and coverage, with upstream's semantics."""

from __future__ import annotations

from pinnace.apiserver.rbac import rule_allows, uncovered
from pinnace.apiserver.requestinfo import RequestInfo


def res(verb: str, resource: str, sub: str = "", name: str = "", group: str = "",
        ns: str = "a") -> RequestInfo:
    return RequestInfo(verb, "", True, group, "v1", ns, resource, sub, name)


def test_verbs_groups_and_resources() -> None:
    rule = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
    assert rule_allows(rule, res("get", "pods"))
    assert not rule_allows(rule, res("delete", "pods"))
    assert not rule_allows(rule, res("get", "pods", group="apps"))
    # A subresource is its own resource: pods does not grant pods/log.
    assert not rule_allows(rule, res("get", "pods", "log"))
    star = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    assert rule_allows(star, res("escalate", "roles", group="rbac.authorization.k8s.io"))


def test_subresource_wildcards_and_names() -> None:
    scale = {"verbs": ["update"], "apiGroups": ["apps"], "resources": ["*/scale"]}
    assert rule_allows(scale, res("update", "deployments", "scale", group="apps"))
    assert not rule_allows(scale, res("update", "deployments", group="apps"))
    named = {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
             "resourceNames": ["one"]}
    assert rule_allows(named, res("get", "configmaps", name="one"))
    assert not rule_allows(named, res("get", "configmaps", name="two"))
    assert not rule_allows(named, res("get", "configmaps"))  # a list has no name


def test_non_resource_urls() -> None:
    rule = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}
    assert rule_allows(rule, RequestInfo("get", "/healthz"))
    assert rule_allows(rule, RequestInfo("get", "/apis/apps/v1"))
    assert not rule_allows(rule, RequestInfo("get", "/metrics"))
    assert not rule_allows(rule, RequestInfo("post", "/healthz"))
    # Resource rules never grant paths, nor path rules resources.
    assert not rule_allows({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                           RequestInfo("get", "/metrics"))
    assert not rule_allows(rule, res("get", "pods"))


def test_coverage_breaks_rules_down() -> None:
    owner = [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "services"]},
             {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
              "resourceNames": ["one"]}]
    assert uncovered(owner, [{"verbs": ["get"], "apiGroups": [""],
                              "resources": ["pods", "services"]}]) == []
    missing = uncovered(owner, [{"verbs": ["get", "delete"], "apiGroups": [""],
                                 "resources": ["pods"]}])
    assert missing == [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]
    # A named grant covers that name only, never every configmap.
    assert uncovered(owner, [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["one"]}]) == []
    assert uncovered(owner, [{"verbs": ["get"], "apiGroups": [""],
                              "resources": ["configmaps"]}]) != []
    everything = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                  {"verbs": ["*"], "nonResourceURLs": ["*"]}]
    assert uncovered(everything, [{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}]) == []
    assert uncovered(owner, [{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}]) != []
