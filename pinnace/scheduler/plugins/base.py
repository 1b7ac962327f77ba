"""What a plugin gives the framework.

Plugins work per pod in two steps, as upstream's PreFilter/Filter and
PreScore/Score do: ``pre_filter`` looks at the pod once and returns either
nothing (the plugin has nothing to say about this pod: skipped, which is
what keeps the per-node loop short), a :class:`Reject` (no node can fit:
upstream's PreFilter Unschedulable) or a :class:`Check` run over nodes in
batches. ``pre_score`` likewise returns None (skip) or a function giving
each node's normalized score (0..100) for a list of feasible nodes.

Most checks read only the node they are given, so a node copy with pods
added or removed (preemption's what-ifs, nominated pods) is all they need.
A check whose verdict depends on pods elsewhere (pod affinity, topology
spread) keeps cluster-wide counts instead; it overrides ``copy`` and
``update`` (upstream's PreFilterExtensions AddPod/RemovePod) so those
what-ifs can move pods in and out of its counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pinnace.scheduler.cache import NodeInfo, PodInfo, SchedulerCache

MAX_NODE_SCORE = 100

Pred = Callable[[NodeInfo], bool]
Scorer = Callable[[Sequence[NodeInfo]], list[int]]


class Reject:
    """PreFilter said no: every node gets ``message``."""

    __slots__ = ("message", "unresolvable")

    def __init__(self, message: str, unresolvable: bool = True) -> None:
        self.message = message
        self.unresolvable = unresolvable


class Check:
    """A per-node filter: ``pred`` passes a node; a failed node's reasons come
    from ``why`` (a constant tuple or a function of the node).

    ``unresolvable`` (UnschedulableAndUnresolvable upstream) means removing
    pods from the node cannot help, so preemption skips it. ``batch``, when
    given, filters a whole list at once (faster than calling ``pred`` per node).
    """

    __slots__ = ("pred", "why", "unresolvable", "batch")

    def __init__(self, pred: Pred, why: tuple[str, ...] | Callable[[NodeInfo], tuple[str, ...]],
                 unresolvable: bool | Callable[[NodeInfo], bool] = False,
                 batch: Callable[[list[NodeInfo]], list[NodeInfo]] | None = None) -> None:
        self.pred = pred
        self.why = why
        self.unresolvable = unresolvable
        self.batch = batch

    def run(self, nodes: list[NodeInfo]) -> list[NodeInfo]:
        if self.batch is not None:
            return self.batch(nodes)
        pred = self.pred
        return [ni for ni in nodes if pred(ni)]

    def reasons(self, ni: NodeInfo) -> tuple[str, ...]:
        w = self.why
        return w if isinstance(w, tuple) else w(ni)

    def is_unresolvable(self, ni: NodeInfo) -> bool:
        u = self.unresolvable
        return u if isinstance(u, bool) else u(ni)

    def copy(self) -> Check:
        """A check whose counts ``update`` may change without touching this one."""
        return self

    def update(self, pod: PodInfo, node: NodeInfo, sign: int) -> None:
        """Count ``pod`` as added to (sign 1) or removed from (-1) ``node``."""


class FilterPlugin(Protocol):
    name: str

    def pre_filter(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any]) -> Check | Reject | None: ...


class ScorePlugin(Protocol):
    name: str

    def pre_score(self, pod: PodInfo, cache: SchedulerCache, state: dict[str, Any],
                  nodes: Sequence[NodeInfo]) -> Scorer | None: ...


def default_normalize(scores: list[int], reverse: bool = False) -> list[int]:
    """helper.DefaultNormalizeScore: scale to 0..100 by the maximum."""
    top = max(scores) if scores else 0
    if top == 0:
        return [MAX_NODE_SCORE] * len(scores) if reverse else list(scores)
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * s // top for s in scores]
    return [MAX_NODE_SCORE * s // top for s in scores]
