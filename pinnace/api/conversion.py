"""Conversion between the shapes of kinds pinnace serves in two versions:

- autoscaling HorizontalPodAutoscaler v1 <-> v2. v1 has only
  ``targetCPUUtilizationPercentage``; every other metric, the current
  metrics, the conditions and the behavior ride in
  ``autoscaling.alpha.kubernetes.io/*`` annotations, as upstream keeps them.
- core/v1 Event <-> events.k8s.io/v1 Event.

and ``to_internal``: what upstream's decoding into the internal version
does to an object of the same version (write-only fields folded into the
fields that are stored).

Objects are never modified in place; the result is a new dict.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson

Obj = dict[str, Any]

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"


class ConversionError(ValueError):
    pass


def convert(group: str, kind: str, obj: Obj, to_version: str) -> Obj:
    """``obj`` (of ``group``/``kind``, in the version its apiVersion names)
    in the shape of apiVersion ``to_version``. A bare version such as "v2"
    means that version of ``group``; "core/v1" names the core group.

    For Events served as events.k8s.io, the bare "v1" is ambiguous (the
    storage shape is core/v1): an object already in the events.k8s.io shape
    goes to core/v1 and any other goes to events.k8s.io/v1."""
    source = obj.get("apiVersion") or ""
    if to_version.startswith("core/"):
        target = to_version[len("core/"):]
    elif "/" in to_version or not group:
        target = to_version
    elif kind == "Event" and group == "events.k8s.io" and source == "events.k8s.io/v1":
        target = "v1"
    else:
        target = f"{group}/{to_version}"
    if kind == "HorizontalPodAutoscaler":
        if target == "autoscaling/v1":
            return obj if source == target else hpa_v2_to_v1(obj)
        if target == "autoscaling/v2":
            return obj if source == target else hpa_v1_to_v2(obj)
    if kind == "Event":
        if target == "events.k8s.io/v1":
            return obj if source == target else event_core_to_events(obj)
        if target == "v1":
            return obj if source == target else event_events_to_core(obj)
    if source == target:
        return obj
    raise ConversionError(f"no conversion for {kind} from {source or group} to {target}")


def to_internal(group: str, kind: str, obj: Obj) -> Obj:
    """``obj`` as it is stored: what the conversion of a request body to the
    internal version and back does besides the version.

    - A Secret's write-only ``stringData`` is merged into ``data`` (base64,
      its keys winning) and never stored, so never returned.
    - The singular fields that mirror a list's first item (a Node's
      ``podCIDR``/``podCIDRs``, a Pod's ``podIP``/``podIPs`` and
      ``hostIP``/``hostIPs``): the list is made from the singular field when
      it is empty or starts elsewhere (the singular one is authoritative, for
      older clients), and the singular field from the list.
    """
    if group:
        return obj
    if kind == "Secret" and "stringData" in obj:
        return secret_string_data_merged(obj)
    if kind == "Node":
        return _mirrored(obj, "spec", [("podCIDR", "podCIDRs", None)])
    if kind == "Pod":
        return _mirrored(obj, "status", [("podIP", "podIPs", "ip"), ("hostIP", "hostIPs", "ip")])
    return obj


def secret_string_data_merged(secret: Obj) -> Obj:
    out = dict(secret)
    string_data = out.pop("stringData")
    if isinstance(string_data, dict) and string_data:
        data = dict(out.get("data") or {})
        for key, value in string_data.items():
            text = "" if value is None else str(value)
            data[key] = base64.b64encode(text.encode()).decode()
        out["data"] = data
    return out


def _mirrored(obj: Obj, part: str, pairs: list[tuple[str, str, str | None]]) -> Obj:
    """``obj`` with each (singular, list, item key) pair of ``obj[part]`` in
    step; items are strings, or objects holding the value under the key."""
    holder = obj.get(part)
    if not isinstance(holder, dict):
        return obj
    out: Obj | None = None
    for one, many, key in pairs:
        single, items = holder.get(one), holder.get(many)
        first = None
        if isinstance(items, list) and items:
            first = items[0].get(key) if key and isinstance(items[0], dict) else items[0]
        if single and isinstance(single, str) and first != single:
            items, first = [{key: single} if key else single], single
        elif first is None or single == first or not isinstance(first, str):
            continue
        out = out if out is not None else dict(holder)
        out[many], out[one] = items, first
    return obj if out is None else {**obj, part: out}


# HPA metric specs: v1 (v2beta1-like) <-> v2 ----------------------------------------

def _drop_none(d: Obj) -> Obj:
    return {k: v for k, v in d.items() if v is not None}


def _metric_id(name: Any, selector: Any) -> Obj:
    return _drop_none({"name": name, "selector": selector})


def _target_from_v1(value: Any = None, average_value: Any = None,
                    utilization: Any = None) -> Obj:
    if utilization is not None:
        return {"type": "Utilization", "averageUtilization": utilization}
    if average_value is not None:
        return {"type": "AverageValue", "averageValue": average_value}
    return _drop_none({"type": "Value", "value": value})


def metric_spec_v1_to_v2(ms: Obj) -> Obj:
    mtype = ms.get("type")
    out: Obj = {"type": mtype}
    if mtype == "Resource" and ms.get("resource"):
        r = ms["resource"]
        out["resource"] = {"name": r.get("name"), "target": _target_from_v1(
            average_value=r.get("targetAverageValue"), utilization=r.get("targetAverageUtilization"))}
    elif mtype == "ContainerResource" and ms.get("containerResource"):
        r = ms["containerResource"]
        out["containerResource"] = {"name": r.get("name"), "container": r.get("container"),
                                    "target": _target_from_v1(
                                        average_value=r.get("targetAverageValue"),
                                        utilization=r.get("targetAverageUtilization"))}
    elif mtype == "Pods" and ms.get("pods"):
        p = ms["pods"]
        out["pods"] = {"metric": _metric_id(p.get("metricName"), p.get("selector")),
                       "target": {"type": "AverageValue", "averageValue": p.get("targetAverageValue")}}
    elif mtype == "Object" and ms.get("object"):
        o = ms["object"]
        out["object"] = {"describedObject": o.get("target"),
                         "metric": _metric_id(o.get("metricName"), o.get("selector")),
                         "target": _target_from_v1(value=o.get("targetValue"),
                                                   average_value=o.get("averageValue"))}
    elif mtype == "External" and ms.get("external"):
        e = ms["external"]
        out["external"] = {"metric": _metric_id(e.get("metricName"), e.get("metricSelector")),
                           "target": _target_from_v1(value=e.get("targetValue"),
                                                     average_value=e.get("targetAverageValue"))}
    return out


def metric_spec_v2_to_v1(ms: Obj) -> Obj:
    mtype = ms.get("type")
    out: Obj = {"type": mtype}
    if mtype == "Resource" and ms.get("resource"):
        r = ms["resource"]
        t = r.get("target") or {}
        out["resource"] = _drop_none({"name": r.get("name"),
                                      "targetAverageUtilization": t.get("averageUtilization"),
                                      "targetAverageValue": t.get("averageValue")})
    elif mtype == "ContainerResource" and ms.get("containerResource"):
        r = ms["containerResource"]
        t = r.get("target") or {}
        out["containerResource"] = _drop_none({
            "name": r.get("name"), "container": r.get("container"),
            "targetAverageUtilization": t.get("averageUtilization"),
            "targetAverageValue": t.get("averageValue")})
    elif mtype == "Pods" and ms.get("pods"):
        p = ms["pods"]
        metric = p.get("metric") or {}
        out["pods"] = _drop_none({"metricName": metric.get("name"),
                                  "targetAverageValue": (p.get("target") or {}).get("averageValue"),
                                  "selector": metric.get("selector")})
    elif mtype == "Object" and ms.get("object"):
        o = ms["object"]
        metric, t = o.get("metric") or {}, o.get("target") or {}
        out["object"] = _drop_none({"target": o.get("describedObject"),
                                    "metricName": metric.get("name"),
                                    "targetValue": t.get("value") or "0",
                                    "selector": metric.get("selector"),
                                    "averageValue": t.get("averageValue")})
    elif mtype == "External" and ms.get("external"):
        e = ms["external"]
        metric, t = e.get("metric") or {}, e.get("target") or {}
        out["external"] = _drop_none({"metricName": metric.get("name"),
                                      "metricSelector": metric.get("selector"),
                                      "targetValue": t.get("value"),
                                      "targetAverageValue": t.get("averageValue")})
    return out


def metric_status_v1_to_v2(ms: Obj) -> Obj:
    mtype = ms.get("type")
    out: Obj = {"type": mtype}
    if mtype in ("Resource", "ContainerResource") and ms.get(_lower(mtype)):
        r = ms[_lower(mtype)]
        body = {"name": r.get("name"), "current": _drop_none({
            "averageUtilization": r.get("currentAverageUtilization"),
            "averageValue": r.get("currentAverageValue")})}
        if mtype == "ContainerResource":
            body["container"] = r.get("container")
        out[_lower(mtype)] = body
    elif mtype == "Pods" and ms.get("pods"):
        p = ms["pods"]
        out["pods"] = {"metric": _metric_id(p.get("metricName"), p.get("selector")),
                       "current": {"averageValue": p.get("currentAverageValue")}}
    elif mtype == "Object" and ms.get("object"):
        o = ms["object"]
        out["object"] = {"describedObject": o.get("target"),
                         "metric": _metric_id(o.get("metricName"), o.get("selector")),
                         "current": _drop_none({"value": o.get("currentValue"),
                                                "averageValue": o.get("averageValue")})}
    elif mtype == "External" and ms.get("external"):
        e = ms["external"]
        out["external"] = {"metric": _metric_id(e.get("metricName"), e.get("metricSelector")),
                           "current": _drop_none({"value": e.get("currentValue"),
                                                  "averageValue": e.get("currentAverageValue")})}
    return out


def metric_status_v2_to_v1(ms: Obj) -> Obj:
    mtype = ms.get("type")
    out: Obj = {"type": mtype}
    if mtype in ("Resource", "ContainerResource") and ms.get(_lower(mtype)):
        r = ms[_lower(mtype)]
        cur = r.get("current") or {}
        out[_lower(mtype)] = _drop_none({
            "name": r.get("name"), "container": r.get("container"),
            "currentAverageUtilization": cur.get("averageUtilization"),
            "currentAverageValue": cur.get("averageValue") or "0"})
    elif mtype == "Pods" and ms.get("pods"):
        p = ms["pods"]
        metric = p.get("metric") or {}
        out["pods"] = _drop_none({"metricName": metric.get("name"),
                                  "currentAverageValue": (p.get("current") or {}).get("averageValue"),
                                  "selector": metric.get("selector")})
    elif mtype == "Object" and ms.get("object"):
        o = ms["object"]
        metric, cur = o.get("metric") or {}, o.get("current") or {}
        out["object"] = _drop_none({"target": o.get("describedObject"),
                                    "metricName": metric.get("name"),
                                    "currentValue": cur.get("value") or "0",
                                    "selector": metric.get("selector"),
                                    "averageValue": cur.get("averageValue")})
    elif mtype == "External" and ms.get("external"):
        e = ms["external"]
        metric, cur = e.get("metric") or {}, e.get("current") or {}
        out["external"] = _drop_none({"metricName": metric.get("name"),
                                      "metricSelector": metric.get("selector"),
                                      "currentValue": cur.get("value") or "0",
                                      "currentAverageValue": cur.get("averageValue")})
    return out


def _lower(t: str) -> str:
    return t[:1].lower() + t[1:]


def _is_cpu_utilization(ms: Obj, key: str) -> bool:
    r = ms.get("resource") or {}
    return (ms.get("type") == "Resource" and r.get("name") == "cpu"
            and (r.get(key) or {}).get("averageUtilization") is not None)


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


def hpa_v2_to_v1(obj: Obj) -> Obj:
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    spec = obj.get("spec") or {}
    out_spec: Obj = _drop_none({"scaleTargetRef": spec.get("scaleTargetRef"),
                                "minReplicas": spec.get("minReplicas"),
                                "maxReplicas": spec.get("maxReplicas")})
    others = []
    for ms in spec.get("metrics") or []:
        if _is_cpu_utilization(ms, "target"):
            out_spec.setdefault("targetCPUUtilizationPercentage",
                                ms["resource"]["target"]["averageUtilization"])
        else:
            others.append(metric_spec_v2_to_v1(ms))
    if others:
        annotations[METRICS_ANNOTATION] = _json(others)
    if spec.get("behavior") is not None:
        annotations[BEHAVIOR_ANNOTATION] = _json(spec["behavior"])
    status = obj.get("status") or {}
    out_status: Obj = _drop_none({
        "observedGeneration": status.get("observedGeneration"),
        "lastScaleTime": status.get("lastScaleTime"),
        "currentReplicas": status.get("currentReplicas", 0),
        "desiredReplicas": status.get("desiredReplicas", 0)})
    current_others = []
    for ms in status.get("currentMetrics") or []:
        if _is_cpu_utilization(ms, "current"):
            out_status.setdefault("currentCPUUtilizationPercentage",
                                  ms["resource"]["current"]["averageUtilization"])
        else:
            current_others.append(metric_status_v2_to_v1(ms))
    if current_others:
        annotations[CURRENT_METRICS_ANNOTATION] = _json(current_others)
    if status.get("conditions"):
        annotations[CONDITIONS_ANNOTATION] = _json(status["conditions"])
    if annotations:
        meta["annotations"] = annotations
    obj["apiVersion"] = "autoscaling/v1"
    obj["spec"] = out_spec
    obj["status"] = out_status
    return obj


def _load(annotations: Obj, key: str) -> Any:
    raw = annotations.pop(key, None)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ConversionError(f"invalid {key} annotation: {e}") from e


def hpa_v1_to_v2(obj: Obj) -> Obj:
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    spec = obj.get("spec") or {}
    metrics = [metric_spec_v1_to_v2(m) for m in _load(annotations, METRICS_ANNOTATION) or []]
    cpu = spec.get("targetCPUUtilizationPercentage")
    if cpu is not None:
        metrics.append({"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}})
    out_spec: Obj = _drop_none({"scaleTargetRef": spec.get("scaleTargetRef"),
                                "minReplicas": spec.get("minReplicas"),
                                "maxReplicas": spec.get("maxReplicas")})
    if metrics:
        out_spec["metrics"] = metrics
    behavior = _load(annotations, BEHAVIOR_ANNOTATION)
    if behavior is not None:
        out_spec["behavior"] = behavior
    status = obj.get("status") or {}
    current = [metric_status_v1_to_v2(m)
               for m in _load(annotations, CURRENT_METRICS_ANNOTATION) or []]
    cur_cpu = status.get("currentCPUUtilizationPercentage")
    if cur_cpu is not None:
        current.append({"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": cur_cpu}}})
    out_status: Obj = _drop_none({
        "observedGeneration": status.get("observedGeneration"),
        "lastScaleTime": status.get("lastScaleTime"),
        "currentReplicas": status.get("currentReplicas"),
        "desiredReplicas": status.get("desiredReplicas", 0)})
    if current:
        out_status["currentMetrics"] = current
    conditions = _load(annotations, CONDITIONS_ANNOTATION)
    if conditions:
        out_status["conditions"] = conditions
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    obj["apiVersion"] = "autoscaling/v2"
    obj["spec"] = out_spec
    obj["status"] = out_status
    return obj


# Events ------------------------------------------------------------------------

# (core/v1 field, events.k8s.io/v1 field)
_EVENT_RENAMES = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
]
_EVENT_SAME = ["metadata", "eventTime", "series", "action", "reason", "related", "type",
               "reportingInstance"]


def _rename(obj: Obj, pairs: list[tuple[str, str]], api_version: str) -> Obj:
    out: Obj = {"kind": "Event", "apiVersion": api_version}
    for key in _EVENT_SAME:
        if key in obj:
            out[key] = copy.deepcopy(obj[key])
    for src, dst in pairs:
        if src in obj:
            out[dst] = copy.deepcopy(obj[src])
    return out


def event_core_to_events(obj: Obj) -> Obj:
    """A core/v1 Event as events.k8s.io/v1 shows it."""
    return _rename(obj, _EVENT_RENAMES, "events.k8s.io/v1")


def event_events_to_core(obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event as core/v1 shows it."""
    out = _rename(obj, [(b, a) for a, b in _EVENT_RENAMES], "v1")
    # Go writes these non-pointer fields even when empty.
    out.setdefault("involvedObject", {})
    out.setdefault("source", {})
    out.setdefault("firstTimestamp", None)
    out.setdefault("lastTimestamp", None)
    out.setdefault("reportingComponent", "")
    out.setdefault("reportingInstance", "")
    return out
