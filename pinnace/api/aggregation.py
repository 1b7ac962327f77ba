"""ClusterRole aggregation: a ClusterRole with an aggregationRule holds the
rules of every ClusterRole its selectors match (how admin, edit and view
gather what CRD authors label ``aggregate-to-view``), in the order upstream's
aggregation controller gives: the matching roles sorted by name, each rule
once."""

from __future__ import annotations

from typing import Any

from .selectors import label_selector_from_dict


def aggregated_rules(role: dict[str, Any], roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    selectors = [label_selector_from_dict(s, plain_map=False)
                 for s in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or ()]
    name = role["metadata"]["name"]
    out: list[dict[str, Any]] = []
    for other in sorted(roles, key=lambda r: r["metadata"]["name"]):
        if other["metadata"]["name"] == name:
            continue
        labels = other["metadata"].get("labels") or {}
        if any(s.matches(labels) for s in selectors):
            for rule in other.get("rules") or ():
                if rule not in out:
                    out.append(rule)
    return out
