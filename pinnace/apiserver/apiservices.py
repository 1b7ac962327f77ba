"""apiregistration.k8s.io APIServices: the local ones kube-apiserver's
autoregister controller keeps for every built-in group version it serves
(`kubectl get apiservices`: NAME, SERVICE "Local", AVAILABLE "True").

pinnace has no aggregation layer: an APIService a user creates for an
extension API server (a chart's metrics or custom-metrics adapter) is
stored and listed, but no request is proxied to it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Obj = dict[str, Any]

# (group, version) -> (groupPriorityMinimum, versionPriority): kube-apiserver's
# table for the group versions pinnace serves. A group version without an
# entry gets no APIService, as upstream skips those.
PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    # First of the named groups in kube-apiserver's /apis (the aggregator's own).
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
    # Served in-process by pinnace where clusters run metrics-server; the
    # priorities are those metrics-server's own APIService asks for.
    ("metrics.k8s.io", "v1beta1"): (100, 100),
}


def name(group: str, version: str) -> str:
    """The APIService's name: version.group ("v1." for the core group)."""
    return f"{version}.{group}"


def local(group: str, version: str, priorities: tuple[int, int]) -> Obj:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name(group, version),
                         "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
            "spec": {"group": group, "version": version,
                     "groupPriorityMinimum": priorities[0], "versionPriority": priorities[1]}}


def available(now: dt.datetime | None = None) -> Obj:
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": when,
                            "reason": "Local", "message": "Local APIServices are always available"}]}
