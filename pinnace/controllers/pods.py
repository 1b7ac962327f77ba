"""Pod facts and actions shared by the workload controllers: is a pod active,
ready, available; which pods to delete first when scaling down; creating a
pod from a template owned by its controller."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

Obj = dict[str, Any]


def parse_time(ts: str | None) -> float:
    if not ts:
        return 0.0
    try:
        return dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0.0


def is_active(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed") and \
        not pod["metadata"].get("deletionTimestamp")


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return None


def is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = condition(pod, "Ready") or {}
    return parse_time(c.get("lastTransitionTime")) + min_ready_seconds <= now


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def restarts(pod: Obj) -> int:
    return sum(int(cs.get("restartCount", 0))
               for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """Pods in the order a controller should delete them when scaling down
    (upstream's ActivePods ranking): unscheduled before scheduled, pending
    before unknown before running, not ready before ready, more restarts
    first, newer before older."""
    def rank(p: Obj) -> tuple[int, int, int, int, float]:
        return (1 if (p.get("spec") or {}).get("nodeName") else 0,
                _PHASE_RANK.get((p.get("status") or {}).get("phase", ""), 0),
                1 if is_ready(p) else 0,
                -restarts(p),
                -parse_time(p["metadata"].get("creationTimestamp")))
    return sorted(pods, key=rank)


def pod_from_template(template: Obj, owner: Obj, owner_ref: Obj,
                      name: str | None = None) -> Obj:
    tmeta = template.get("metadata") or {}
    meta: Obj = {"labels": dict(tmeta.get("labels") or {}),
                 "annotations": dict(tmeta.get("annotations") or {}),
                 "ownerReferences": [owner_ref],
                 "namespace": owner["metadata"]["namespace"]}
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = owner["metadata"]["name"] + "-"
    if not meta["annotations"]:
        del meta["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}
