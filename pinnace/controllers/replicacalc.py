"""How many replicas a Resource metric asks for (upstream
pkg/controller/podautoscaler/replica_calculator.go and metrics/): pure
functions over pods, their metrics and their requests, so they can be
checked without a cluster.

All amounts are milli-units as upstream counts them (``MilliValue()``: 250m
of CPU is 250, 64Mi of memory is 67108864000).

The algorithm, as upstream's:
- pods being deleted or Failed are ignored; Pending pods count as unready;
  a pod with no metric is "missing"; for CPU, a pod is unready while it is
  within the CPU initialization period (5 min) and either not Ready or its
  metric was sampled less than one metric window after it became Ready, or
  after that period when it is not Ready and never was (its Ready condition
  changed within the initial readiness delay, 30 s, of its start);
- the usage ratio is current/target over the pods that are ready and have
  metrics; within the tolerance (10%: 0.9..1.1) nothing changes;
- otherwise, with no missing or unready pods to worry about, the answer is
  ceil(ratio * ready pods). When there are some: on a scale-down, missing
  pods count as using their whole request (the target, if it is above 100%,
  or exactly the target for an AverageValue); on a scale-up, missing and
  unready pods count as using nothing; the ratio is computed again, and if
  it is now within the tolerance or points the other way, nothing changes.
Simplified: pod-level resources (spec.resources on the Pod) are not read;
requests are the containers' (with restartable init containers), as
upstream computes them when the PodLevelResources feature is off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pinnace.api import quantity

from .pods import condition, parse_time

Obj = dict[str, Any]

CPU = "cpu"


class MetricError(Exception):
    """A replica count cannot be computed from this metric (the message is
    upstream's, ready to be wrapped in the condition's)."""


@dataclass(frozen=True)
class PodMetric:
    value: int  # milli-units
    timestamp: float = 0.0
    window: float = 0.0


@dataclass(frozen=True)
class Tolerances:
    down: float = 0.1
    up: float = 0.1

    def within(self, ratio: float) -> bool:
        return 1.0 - self.down <= ratio <= 1.0 + self.up


def milli(q: Any) -> int:
    """Go's Quantity.MilliValue(): rounded up."""
    return math.ceil(quantity.parse_quantity(q) * 1000)


# -- metrics.k8s.io answers ------------------------------------------------------------


def parse_go_duration(text: str) -> float:
    """A Go duration such as "10s", "1m30s", "500ms" in seconds (0 if unreadable)."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    text = text or ""
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] in units else ch
        if unit not in units or not num:
            return 0.0
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    return total


def pod_metrics(items: list[Obj], resource: str, container: str = "") -> dict[str, PodMetric]:
    """PodMetrics objects -> pod name -> the summed usage of ``resource`` by
    its containers (or by ``container`` only). A pod with no containers, or
    one lacking the resource, has no metric (upstream getPodMetrics); one
    without ``container`` is an error (getContainerMetrics)."""
    out: dict[str, PodMetric] = {}
    for m in items:
        meta = m.get("metadata") or {}
        name = meta.get("name", "")
        ts, window = parse_time(m.get("timestamp")), parse_go_duration(m.get("window") or "")
        containers = m.get("containers") or []
        if container:
            for c in containers:
                if c.get("name") == container:
                    usage = (c.get("usage") or {}).get(resource)
                    if usage is not None:
                        out[name] = PodMetric(milli(usage), ts, window)
                    break
            else:
                raise MetricError(f"container {container} not present in metrics for pod "
                                  f"{meta.get('namespace', '')}/{name}")
            continue
        total, missing = 0, not containers
        for c in containers:
            usage = (c.get("usage") or {}).get(resource)
            if usage is None:
                missing = True
                break
            total += milli(usage)
        if not missing:
            out[name] = PodMetric(total, ts, window)
    return out


# -- pods ------------------------------------------------------------------------------


@dataclass
class PodGroups:
    ready: int
    unready: set[str]
    missing: set[str]
    ignored: set[str]


def group_pods(pods: list[Obj], metrics: dict[str, PodMetric], resource: str,
               cpu_initialization_period: float, initial_readiness_delay: float,
               now: float) -> PodGroups:
    g = PodGroups(0, set(), set(), set())
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        phase = status.get("phase")
        if pod["metadata"].get("deletionTimestamp") or phase == "Failed":
            g.ignored.add(name)
            continue
        if phase == "Pending":
            g.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            g.missing.add(name)
            continue
        if resource == CPU:
            ready = condition(pod, "Ready")
            started = status.get("startTime")
            if ready is None or not started:
                unready = True
            else:
                start = parse_time(started)
                changed = parse_time(ready.get("lastTransitionTime"))
                if start + cpu_initialization_period > now:
                    unready = ready.get("status") == "False" or \
                        metric.timestamp < changed + metric.window
                else:
                    unready = ready.get("status") == "False" and \
                        start + initial_readiness_delay > changed
            if unready:
                g.unready.add(name)
                continue
        g.ready += 1
    return g


def pod_requests(pods: list[Obj], resource: str, container: str = "") -> dict[str, int]:
    """Each pod's request of ``resource`` (milli), summed over its containers
    and restartable init containers, or of ``container`` only."""
    out: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        name = pod["metadata"]["name"]
        containers = list(spec.get("containers") or [])
        containers += [c for c in spec.get("initContainers") or []
                       if c.get("restartPolicy") == "Always"]
        total, found = 0, False
        for c in containers:
            if container and c.get("name") != container:
                continue
            req = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if req is None:
                raise MetricError(f"missing request for {resource} in container "
                                  f"{c.get('name', '')} of Pod {name}")
            total += milli(req)
            found = True
            if container:
                break
        if container and not found:
            raise MetricError(f"container {container} not found in Pod {name}")
        out[name] = total
    return out


def utilization_ratio(metrics: dict[str, PodMetric], requests: dict[str, int],
                      target: int) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average raw usage) over the pods that
    have both a metric and a request."""
    used = requested = entries = 0
    for name, m in metrics.items():
        if name not in requests:
            continue
        used += m.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // entries


def usage_ratio(metrics: dict[str, PodMetric], target: int) -> tuple[float, int]:
    total = sum(m.value for m in metrics.values())
    usage = total // len(metrics)
    return usage / target, usage


# -- replica counts ----------------------------------------------------------------------


@dataclass
class Inputs:
    """What a calculation looks at: the pods the target's selector picks,
    their metrics, and the controller's settings."""
    current: int
    pods: list[Obj]
    metrics: dict[str, PodMetric]
    resource: str
    tolerances: Tolerances
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0
    now: float = 0.0

    def grouped(self) -> tuple[PodGroups, dict[str, PodMetric]]:
        if not self.pods:
            raise MetricError("no pods returned by selector while calculating replica count")
        g = group_pods(self.pods, self.metrics, self.resource, self.cpu_initialization_period,
                       self.initial_readiness_delay, self.now)
        metrics = {k: v for k, v in self.metrics.items()
                   if k not in g.ignored and k not in g.unready}
        if not metrics:
            raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
        return g, metrics


def _settle(inp: Inputs, g: PodGroups, ratio: float, new_ratio: float, counted: int) -> int:
    if inp.tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or \
            (ratio > 1.0 > new_ratio):
        return inp.current
    replicas = math.ceil(new_ratio * counted)
    if (new_ratio < 1.0 and replicas > inp.current) or (new_ratio > 1.0 and replicas < inp.current):
        return inp.current
    return replicas


def _assume(metrics: dict[str, PodMetric], g: PodGroups, ratio: float,
            scale_up_with_unready: bool, at_target: Callable[[str], int]) -> None:
    """Upstream's conservative guesses before the ratio is computed again:
    pods without metrics count as using what the target allows
    (``at_target``) when scaling down and nothing when scaling up; unready
    pods count as using nothing when they would push a scale-up."""
    if g.missing:
        if ratio < 1.0:
            for name in g.missing:
                metrics[name] = PodMetric(at_target(name))
        elif ratio > 1.0:
            for name in g.missing:
                metrics[name] = PodMetric(0)
    if scale_up_with_unready:
        for name in g.unready:
            metrics[name] = PodMetric(0)


def resource_replicas(inp: Inputs, target_utilization: int,
                      container: str = "") -> tuple[int, int, int]:
    """Utilization target: (replicas, utilization %, average raw usage)."""
    g, metrics = inp.grouped()
    requests = pod_requests(inp.pods, inp.resource, container)
    ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
    scale_up_with_unready = bool(g.unready) and ratio > 1.0
    if not scale_up_with_unready and not g.missing:
        if inp.tolerances.within(ratio):
            return inp.current, utilization, raw
        return math.ceil(ratio * g.ready), utilization, raw
    fallback = max(100, target_utilization)
    _assume(metrics, g, ratio, scale_up_with_unready,
            lambda name: requests[name] * fallback // 100)
    new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
    return _settle(inp, g, ratio, new_ratio, len(metrics)), utilization, raw


def raw_resource_replicas(inp: Inputs, target_usage: int) -> tuple[int, int]:
    """AverageValue target (milli): (replicas, average usage)."""
    g, metrics = inp.grouped()
    ratio, usage = usage_ratio(metrics, target_usage)
    scale_up_with_unready = bool(g.unready) and ratio > 1.0
    if not scale_up_with_unready and not g.missing:
        if inp.tolerances.within(ratio):
            return inp.current, usage
        return math.ceil(ratio * g.ready), usage
    _assume(metrics, g, ratio, scale_up_with_unready, lambda name: target_usage)
    new_ratio, _ = usage_ratio(metrics, target_usage)
    return _settle(inp, g, ratio, new_ratio, len(metrics)), usage
