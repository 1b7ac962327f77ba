"""From the replica count the metrics ask for to the one the autoscaler
sets (upstream horizontal.go: normalizeDesiredReplicas and
normalizeDesiredReplicasWithBehaviors): stabilization windows, then rate
limits, then minReplicas/maxReplicas. Pure functions over one autoscaler's
remembered recommendations and scale events, with the time passed in.

Without ``spec.behavior`` (upstream's default path): a scale-down takes the
highest recommendation of the downscale stabilization window (300 s), a
scale-up goes at most to max(2 * current, 4).
With ``spec.behavior`` (defaulted by the API: scale-up window 0 s and the
larger of +4 pods or +100% per 15 s; scale-down window 300 s and -100% per
15 s): scale-up takes the lowest recommendation of its window and
scale-down the highest of its own; then each direction's policies bound the
change against the changes made within each policy's period (selectPolicy
Max picks the policy allowing the larger change, Min the smaller, Disabled
none at all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
INT32_MAX = 2**31 - 1


@dataclass
class Recommendation:
    replicas: int
    at: float


@dataclass
class ScaleEvent:
    change: int  # replicas added (scale-up list) or removed (scale-down list)
    at: float


@dataclass
class Memory:
    """What the controller remembers of one autoscaler between syncs (upstream
    keeps the same maps keyed by namespace/name, in memory only)."""
    recommendations: list[Recommendation] = field(default_factory=list)
    up_events: list[ScaleEvent] = field(default_factory=list)
    down_events: list[ScaleEvent] = field(default_factory=list)

    def record_initial(self, current: int, now: float) -> None:
        if not self.recommendations:
            self.recommendations.append(Recommendation(current, now))

    def _record(self, desired: int, now: float, stale: Any) -> None:
        """Keep ``desired``: in the slot of a sample older than every window
        (``stale(rec)``), else appended."""
        for i in range(len(self.recommendations) - 1, -1, -1):
            if stale(self.recommendations[i]):
                self.recommendations[i] = Recommendation(desired, now)
                return
        self.recommendations.append(Recommendation(desired, now))


@dataclass(frozen=True)
class Limited:
    replicas: int
    reason: str
    message: str


WITHIN_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")


# -- without behavior ----------------------------------------------------------------------


def stabilize(mem: Memory, desired: int, window: float, now: float) -> int:
    """The highest recommendation within the downscale window (and ``desired``)."""
    cutoff = now - window
    best = desired
    for rec in mem.recommendations:
        if rec.at >= cutoff and rec.replicas > best:
            best = rec.replicas
    mem._record(desired, now, lambda r: r.at < cutoff)
    return best


def limit(current: int, desired: int, min_replicas: int, max_replicas: int) -> Limited:
    """convertDesiredReplicasWithRules: minReplicas, and the smaller of
    maxReplicas and the scale-up limit."""
    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if max_replicas > scale_up_limit:
        highest, reason, message = scale_up_limit, "ScaleUpLimit", \
            "the desired replica count is increasing faster than the maximum scale rate"
    else:
        highest, reason, message = max_replicas, "TooManyReplicas", \
            "the desired replica count is more than the maximum replica count"
    if desired < min_replicas:
        return Limited(min_replicas, "TooFewReplicas",
                       "the desired replica count is less than the minimum replica count")
    if desired > highest:
        return Limited(highest, reason, message)
    return Limited(desired, *WITHIN_RANGE)


# -- with behavior -------------------------------------------------------------------------


def _window(rules: Obj, default: float) -> float:
    w = rules.get("stabilizationWindowSeconds")
    return float(w) if isinstance(w, int) else default


def stabilize_with_behavior(mem: Memory, behavior: Obj, current: int, desired: int,
                            default_down_window: float, now: float) -> tuple[int, str, str]:
    up_cutoff = now - _window(behavior.get("scaleUp") or {}, 0.0)
    down_cutoff = now - _window(behavior.get("scaleDown") or {}, default_down_window)
    up, down = desired, desired
    for rec in mem.recommendations:
        if rec.at > up_cutoff:
            up = min(up, rec.replicas)
        if rec.at > down_cutoff:
            down = max(down, rec.replicas)
    recommendation = min(max(current, up), down)
    mem._record(desired, now, lambda r: r.at < up_cutoff and r.at < down_cutoff)
    if desired >= current:
        return recommendation, "ScaleUpStabilized", \
            "recent recommendations were lower than current one, applying the lowest " \
            "recent recommendation"
    return recommendation, "ScaleDownStabilized", \
        "recent recommendations were higher than current one, applying the highest recent " \
        "recommendation"


def _changed_within(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.at > now - period)


def scale_up_limit(current: int, mem: Memory, rules: Obj, now: float) -> int:
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (min, INT32_MAX) if select == "Min" else (max, -INT32_MAX - 1)
    for p in rules.get("policies") or []:
        period = float(p.get("periodSeconds") or 0)
        start = current - _changed_within(period, mem.up_events, now) + \
            _changed_within(period, mem.down_events, now)
        value = int(p.get("value") or 0)
        if p.get("type") == "Pods":
            proposed = start + value
        elif p.get("type") == "Percent":
            proposed = math.ceil(start * (1 + value / 100))
        else:
            continue
        result = pick(result, proposed)
    return result


def scale_down_limit(current: int, mem: Memory, rules: Obj, now: float) -> int:
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (max, -INT32_MAX - 1) if select == "Min" else (min, INT32_MAX)
    for p in rules.get("policies") or []:
        period = float(p.get("periodSeconds") or 0)
        start = current - _changed_within(period, mem.up_events, now) + \
            _changed_within(period, mem.down_events, now)
        value = int(p.get("value") or 0)
        if p.get("type") == "Pods":
            proposed = start - value
        elif p.get("type") == "Percent":
            proposed = int(start * (1 - value / 100))
        else:
            continue
        result = pick(result, proposed)
    return result


def limit_with_behavior(mem: Memory, behavior: Obj, current: int, desired: int,
                        min_replicas: int, max_replicas: int, now: float) -> Limited:
    """convertDesiredReplicasWithBehaviorRate."""
    if desired > current:
        up = max(scale_up_limit(current, mem, behavior.get("scaleUp") or {}, now), current)
        if max_replicas > up:
            highest, reason, message = up, "ScaleUpLimit", \
                "the desired replica count is increasing faster than the maximum scale rate"
        else:
            highest, reason, message = max_replicas, "TooManyReplicas", \
                "the desired replica count is more than the maximum replica count"
        if desired > highest:
            return Limited(highest, reason, message)
    elif desired < current:
        down = min(scale_down_limit(current, mem, behavior.get("scaleDown") or {}, now), current)
        if min_replicas < down:
            lowest, reason, message = down, "ScaleDownLimit", \
                "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            lowest, reason, message = min_replicas, "TooFewReplicas", \
                "the desired replica count is less than the minimum replica count"
        if desired < lowest:
            return Limited(lowest, reason, message)
    return Limited(desired, *WITHIN_RANGE)


def _longest_period(rules: Obj) -> float:
    return float(max((p.get("periodSeconds") or 0 for p in rules.get("policies") or []),
                     default=0))


def store_scale_event(mem: Memory, behavior: Obj | None, previous: int, new: int,
                      now: float) -> None:
    """Remember a scale change for the rate limits (only with behavior, as
    upstream), forgetting changes older than the longest policy period."""
    if behavior is None or new == previous:
        return
    if new > previous:
        keep = _longest_period(behavior.get("scaleUp") or {})
        mem.up_events = [e for e in mem.up_events if e.at > now - keep]
        mem.up_events.append(ScaleEvent(new - previous, now))
    else:
        keep = _longest_period(behavior.get("scaleDown") or {})
        mem.down_events = [e for e in mem.down_events if e.at > now - keep]
        mem.down_events.append(ScaleEvent(previous - new, now))
