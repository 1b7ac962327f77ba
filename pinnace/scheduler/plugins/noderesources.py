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


# One tuple per pod shape, so a node's remembered score is checked with
# ``is``: no reads beyond the node itself. Forgetting the shapes only costs
# recomputing (a node holds its tuple, so an identity is never reused).
_SHAPES: dict[tuple[int, int], tuple[int, int]] = {}


def _shape(pc: int, pm: int) -> tuple[int, int]:
    k = (pc, pm)
    s = _SHAPES.get(k)
    if s is None:
        if len(_SHAPES) > 10_000:
            _SHAPES.clear()
        s = _SHAPES[k] = k
    return s


def _least_fill(ni: NodeInfo, shape: tuple[int, int]) -> int:
    v = ni.least = _least_allocated_one(ni, *shape)
    ni.least_shape = shape
    return v


def least_allocated(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    """Per node, remembered on it until its pods change."""
    shape = _shape(pod.nz_cpu, pod.nz_mem)
    return [ni.least if ni.least_shape is shape else _least_fill(ni, shape) for ni in nodes]


def _balanced_one(ni: NodeInfo, pc: int, pm: int) -> int:
    ac, am = ni.alloc_cpu, ni.alloc_mem
    if not ac or not am:
        return 100  # one resource left: its deviation is zero
    fc = min((ni.req_cpu + pc) / ac, 1.0)
    fm = min((ni.req_mem + pm) / am, 1.0)
    return int((1 - abs(fc - fm) / 2) * 100)


def _balanced_fill(ni: NodeInfo, shape: tuple[int, int]) -> int:
    v = ni.balanced = _balanced_one(ni, *shape)
    ni.balanced_shape = shape
    return v


def balanced_allocation(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    shape = _shape(pod.cpu, pod.mem)
    return [ni.balanced if ni.balanced_shape is shape else _balanced_fill(ni, shape)
            for ni in nodes]


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check:
        cpu, mem = pod.cpu, pod.mem
        if pod.eph or pod.scalar:
            def ok(ni: NodeInfo) -> bool:
                return not fit_reasons(pod, ni)
            return Check(ok, lambda ni: fit_reasons(pod, ni))

        # The common shapes: cpu, memory and a pod slot, the verdict remembered
        # on the node as the scores are.
        shape = _shape(cpu, mem)

        def fits(ni: NodeInfo) -> bool:
            # A resource the pod does not ask for is not checked (an overcommitted
            # node can still take a pod that needs none of it).
            v = ni.fit = ni.free_pods > 0 and (not cpu or cpu <= ni.free_cpu) and \
                (not mem or mem <= ni.free_mem)
            ni.fit_shape = shape
            return v

        def batch(nodes: list[NodeInfo]) -> list[NodeInfo]:
            return [ni for ni in nodes if (ni.fit if ni.fit_shape is shape else fits(ni))]

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
