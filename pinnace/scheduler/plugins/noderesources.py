"""NodeResourcesFit (filter and LeastAllocated score) and
NodeResourcesBalancedAllocation.

The filter compares the pod's requests with what is left of the node's
allocatable; the pod-count check always runs. Both scores use cpu and memory
with weight 1, as upstream's defaults; LeastAllocated counts requests with
the non-zero defaults (100m, 200Mi) for containers that set none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from pinnace.scheduler.plugins.base import Check, Scorer

TOO_MANY_PODS = "Too many pods"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


def fit_reasons(pod: PodInfo, ni: NodeInfo) -> tuple[str, ...]:
    """Every resource the node lacks for the pod, in upstream's order."""
    out = []
    if len(ni.pods) + 1 > ni.alloc_pods:
        out.append(TOO_MANY_PODS)
    if pod.cpu and pod.cpu > ni.alloc_cpu - ni.req_cpu:
        out.append(insufficient("cpu"))
    if pod.mem and pod.mem > ni.alloc_mem - ni.req_mem:
        out.append(insufficient("memory"))
    if pod.eph and pod.eph > ni.alloc_eph - ni.req_eph:
        out.append(insufficient("ephemeral-storage"))
    for k in sorted(pod.scalar):
        v = pod.scalar[k]
        if v and v > ni.alloc_scalar.get(k, 0) - ni.req_scalar.get(k, 0):
            out.append(insufficient(k))
    return tuple(out)


def _least_allocated_one(ni: NodeInfo, pc: int, pm: int) -> int:
    ac, am = ni.alloc_cpu, ni.alloc_mem
    rc, rm = ni.nz_cpu + pc, ni.nz_mem + pm
    s = (ac - rc) * 100 // ac if ac and rc <= ac else 0
    s += (am - rm) * 100 // am if am and rm <= am else 0
    return s // 2


def _memoized(name: str, fn: Any, pc: int, pm: int, nodes: Sequence[NodeInfo]) -> list[int]:
    """fn(node, pc, pm) per node, remembered on the node: a node's score only
    changes when its pods do, so most come from the memo."""
    key = (name, pc, pm)
    out: list[int] = []
    app = out.append
    for ni in nodes:
        m = ni.memo
        v = m.get(key)
        if v is None:
            v = m[key] = fn(ni, pc, pm)
        app(v)
    return out


def least_allocated(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    return _memoized("least", _least_allocated_one, pod.nz_cpu, pod.nz_mem, nodes)


def _balanced_one(ni: NodeInfo, pc: int, pm: int) -> int:
    ac, am = ni.alloc_cpu, ni.alloc_mem
    if not ac or not am:
        return 100  # one resource left: its deviation is zero
    fc = min((ni.req_cpu + pc) / ac, 1.0)
    fm = min((ni.req_mem + pm) / am, 1.0)
    return int((1 - abs(fc - fm) / 2) * 100)


def balanced_allocation(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    return _memoized("balanced", _balanced_one, pod.cpu, pod.mem, nodes)


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check:
        cpu, mem = pod.cpu, pod.mem
        if pod.eph or pod.scalar:
            def ok(ni: NodeInfo) -> bool:
                return not fit_reasons(pod, ni)
            return Check(ok, lambda ni: fit_reasons(pod, ni))

        # The common shapes, each one comprehension over the batch.
        def batch(nodes: list[NodeInfo]) -> list[NodeInfo]:
            if cpu and mem:
                return [ni for ni in nodes if ni.free_pods > 0 and cpu <= ni.free_cpu and mem <= ni.free_mem]
            if cpu:
                return [ni for ni in nodes if ni.free_pods > 0 and cpu <= ni.free_cpu]
            if mem:
                return [ni for ni in nodes if ni.free_pods > 0 and mem <= ni.free_mem]
            return [ni for ni in nodes if ni.free_pods > 0]

        return Check(lambda ni: not fit_reasons(pod, ni), lambda ni: fit_reasons(pod, ni), batch=batch)

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer:
        return lambda nodes: least_allocated(pod, nodes)


class NodeResourcesBalancedAllocation:
    name = "NodeResourcesBalancedAllocation"

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None:
        if not pod.cpu and not pod.mem:
            return None  # best-effort pods are skipped, as upstream
        return lambda nodes: balanced_allocation(pod, nodes)
