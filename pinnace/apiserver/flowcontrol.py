"""flowcontrol.apiserver.k8s.io/v1: the FlowSchemas and
PriorityLevelConfigurations kube-apiserver makes at start (its "mandatory"
and "suggested" API Priority and Fairness configuration), so that
`kubectl get flowschemas` and charts that add their own see what they would
on Kubernetes.

pinnace does not queue or shed requests by them: the objects are stored,
validated and shown, and each FlowSchema's status says whether its priority
level exists (the Dangling condition kube-apiserver's APF controller keeps).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Obj = dict[str, Any]

AUTOUPDATE = "apf.kubernetes.io/autoupdate-spec"
_ALL_RESOURCES = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True,
                  "namespaces": ["*"]}
_ALL_URLS = {"verbs": ["*"], "nonResourceURLs": ["*"]}


def _group(name: str) -> Obj:
    return {"kind": "Group", "group": {"name": name}}


def _user(name: str) -> Obj:
    return {"kind": "User", "user": {"name": name}}


def _service_account(namespace: str, name: str) -> Obj:
    return {"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}


def _meta(name: str) -> Obj:
    return {"name": name, "annotations": {AUTOUPDATE: "true"}}


def _limited(shares: int, lendable: int, queues: int = 0, hand: int = 0,
             length: int = 0) -> Obj:
    response: Obj = {"type": "Queue", "queuing": {"queues": queues, "handSize": hand,
                                                  "queueLengthLimit": length}} \
        if queues else {"type": "Reject"}
    return {"type": "Limited", "limited": {"nominalConcurrencyShares": shares,
                                           "lendablePercent": lendable,
                                           "limitResponse": response}}


def priority_levels() -> list[Obj]:
    """kube-apiserver's priority levels: the two it always keeps, then the suggested ones."""
    specs = {
        "exempt": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0,
                                                "lendablePercent": 0}},
        "catch-all": _limited(5, 0),
        "system": _limited(30, 33, 64, 6, 50),
        "node-high": _limited(40, 25, 64, 6, 50),
        "leader-election": _limited(10, 0, 16, 4, 50),
        "workload-high": _limited(40, 50, 128, 6, 50),
        "workload-low": _limited(100, 90, 128, 6, 50),
        "global-default": _limited(20, 50, 128, 6, 50),
    }
    return [{"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
             "metadata": _meta(name), "spec": spec} for name, spec in specs.items()]


def _schema(name: str, level: str, precedence: int, method: str | None,
            subjects: list[Obj], resource_rules: list[Obj] | None = None,
            non_resource_rules: list[Obj] | None = None) -> Obj:
    rule: Obj = {"subjects": subjects}
    if resource_rules:
        rule["resourceRules"] = resource_rules
    if non_resource_rules:
        rule["nonResourceRules"] = non_resource_rules
    spec: Obj = {"priorityLevelConfiguration": {"name": level},
                 "matchingPrecedence": precedence, "rules": [rule]}
    if method:
        spec["distinguisherMethod"] = {"type": method}
    return {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": _meta(name), "spec": spec}


def flow_schemas() -> list[Obj]:
    everyone = [_group("system:unauthenticated"), _group("system:authenticated")]
    kube_system_accounts = [_service_account("kube-system", "*")]
    leases = {"verbs": ["get", "create", "update"], "apiGroups": ["coordination.k8s.io"],
              "resources": ["leases"], "namespaces": ["*"]}

    def everything(name: str, level: str, precedence: int, method: str | None,
                   subjects: list[Obj]) -> Obj:
        return _schema(name, level, precedence, method, subjects, [_ALL_RESOURCES], [_ALL_URLS])

    return [
        everything("exempt", "exempt", 1, None, [_group("system:masters")]),
        _schema("probes", "exempt", 2, None, everyone, non_resource_rules=[
            {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]),
        _schema("system-leader-election", "leader-election", 100, "ByUser",
                [_user("system:kube-controller-manager"), _user("system:kube-scheduler"),
                 *kube_system_accounts],
                [{"verbs": ["get", "create", "update"], "apiGroups": [""],
                  "resources": ["endpoints", "configmaps"], "namespaces": ["kube-system"]},
                 leases]),
        _schema("endpoint-controller", "workload-high", 150, "ByUser",
                [_user("system:kube-controller-manager"),
                 _service_account("kube-system", "endpoint-controller")],
                [{"verbs": ["get", "create", "update"], "apiGroups": [""],
                  "resources": ["endpoints"], "namespaces": ["*"]}]),
        _schema("workload-leader-election", "leader-election", 200, "ByUser",
                kube_system_accounts,
                [{"verbs": ["get", "create", "update"], "apiGroups": [""],
                  "resources": ["endpoints", "configmaps"], "namespaces": ["*"]}, leases]),
        _schema("system-node-high", "node-high", 400, "ByUser", [_group("system:nodes")],
                [{"verbs": ["*"], "apiGroups": [""], "resources": ["nodes", "nodes/status"],
                  "clusterScope": True, "namespaces": ["*"]}, {**leases, "verbs": ["*"]}]),
        everything("system-nodes", "system", 500, "ByUser", [_group("system:nodes")]),
        everything("kube-controller-manager", "workload-high", 800, "ByNamespace",
                   [_user("system:kube-controller-manager")]),
        everything("kube-scheduler", "workload-high", 800, "ByNamespace",
                   [_user("system:kube-scheduler")]),
        everything("kube-system-service-accounts", "workload-high", 900, "ByNamespace",
                   kube_system_accounts),
        everything("service-accounts", "workload-low", 9000, "ByUser",
                   [_group("system:serviceaccounts")]),
        everything("global-default", "global-default", 9900, "ByUser", everyone),
        everything("catch-all", "catch-all", 10000, "ByUser", everyone),
    ]


def dangling_status(schema: Obj, levels: set[str], now: dt.datetime | None = None) -> Obj:
    """The status the APF controller keeps: does the priority level exist?"""
    level = ((schema.get("spec") or {}).get("priorityLevelConfiguration") or {}).get("name", "")
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if level in levels:
        cond = {"type": "Dangling", "status": "False", "reason": "Found",
                "message": f'This FlowSchema references the PriorityLevelConfiguration object '
                           f'named "{level}" and it exists', "lastTransitionTime": when}
    else:
        cond = {"type": "Dangling", "status": "True", "reason": "NotFound",
                "message": f'This FlowSchema references the PriorityLevelConfiguration object '
                           f'named "{level}" but there is no such object',
                "lastTransitionTime": when}
    return {"conditions": [cond]}
