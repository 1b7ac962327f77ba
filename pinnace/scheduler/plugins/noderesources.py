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


def least_allocated(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    pc, pm = pod.nz_cpu, pod.nz_mem
    out = []
    app = out.append
    for ni in nodes:
        ac = ni.alloc_cpu
        rc = ni.nz_cpu + pc
        am = ni.alloc_mem
        rm = ni.nz_mem + pm
        s = (ac - rc) * 100 // ac if ac and rc <= ac else 0
        s += (am - rm) * 100 // am if am and rm <= am else 0
        app(s // 2)
    return out


def balanced_allocation(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    pc, pm = pod.cpu, pod.mem
    out = []
    app = out.append
    for ni in nodes:
        ac = ni.alloc_cpu
        am = ni.alloc_mem
        if not ac or not am:
            # One resource left: its deviation is zero.
            app(100)
            continue
        fc = (ni.req_cpu + pc) / ac
        fm = (ni.req_mem + pm) / am
        if fc > 1:
            fc = 1.0
        if fm > 1:
            fm = 1.0
        app(int((1 - abs(fc - fm) / 2) * 100))
    return out


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
                return [ni for ni in nodes if len(ni.pods) < ni.alloc_pods
                        and cpu <= ni.alloc_cpu - ni.req_cpu and mem <= ni.alloc_mem - ni.req_mem]
            if cpu:
                return [ni for ni in nodes if len(ni.pods) < ni.alloc_pods and cpu <= ni.alloc_cpu - ni.req_cpu]
            if mem:
                return [ni for ni in nodes if len(ni.pods) < ni.alloc_pods and mem <= ni.alloc_mem - ni.req_mem]
            return [ni for ni in nodes if len(ni.pods) < ni.alloc_pods]

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
