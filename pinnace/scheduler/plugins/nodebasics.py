"""NodeName, NodeUnschedulable and TaintToleration: filters on the node's
own spec, plus TaintToleration's PreferNoSchedule score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins._match import tolerates
from pinnace.scheduler.plugins.base import Check, Scorer, default_normalize

ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_UNSCHEDULABLE = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeName:
    name = "NodeName"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        want = pod.node_name
        if not want:
            return None
        return Check(lambda ni: ni.name == want, (ERR_NODE_NAME,), unresolvable=True)


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        if not cache.unschedulable_nodes or tolerates(pod.tolerations, UNSCHEDULABLE_TAINT):
            return None
        return Check(lambda ni: not ni.unschedulable, (ERR_UNSCHEDULABLE,), unresolvable=True,
                     batch=lambda nodes: [ni for ni in nodes if not ni.unschedulable])


def untolerated_taint_reason(taint: dict[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


class TaintToleration:
    name = "TaintToleration"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | None:
        if not cache.hard_tainted_nodes:
            return None
        tols = pod.tolerations
        seen: dict[int, Any] = {}

        def first_untolerated(ni: NodeInfo) -> dict[str, Any] | None:
            # Nodes share few distinct taint lists; remember each verdict.
            k = id(ni.hard_taints)
            if k in seen and seen[k][0] is ni.hard_taints:
                return seen[k][1]
            bad = next((t for t in ni.hard_taints if not tolerates(tols, t)), None)
            seen[k] = (ni.hard_taints, bad)
            return bad

        def batch(nodes: list[NodeInfo]) -> list[NodeInfo]:
            return [ni for ni in nodes if not ni.hard_taints or first_untolerated(ni) is None]

        def why(ni: NodeInfo) -> tuple[str, ...]:
            t = first_untolerated(ni)
            return (untolerated_taint_reason(t),) if t is not None else ()

        return Check(lambda ni: not ni.hard_taints or first_untolerated(ni) is None, why,
                     unresolvable=True, batch=batch)

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None:
        if not cache.soft_tainted_nodes:
            return None  # every node scores the same
        tols = [t for t in pod.tolerations if not t.get("effect") or t.get("effect") == "PreferNoSchedule"]

        def score(nodes: Sequence[NodeInfo]) -> list[int]:
            raw = [sum(1 for t in ni.soft_taints if not tolerates(tols, t)) if ni.soft_taints else 0
                   for ni in nodes]
            return default_normalize(raw, reverse=True)

        return score
