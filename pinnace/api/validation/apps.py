"""apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import meta as m
from . import names, pods
from ._common import (
    Errs,
    Obj,
    as_dict,
    as_list,
    d,
    forbidden,
    immutable,
    int_or_string_repr,
    invalid,
    is_int,
    non_negative,
    not_supported,
    required,
    selector_repr,
)
from .core import validate_replica_status

NOT_MATCH = "`selector` does not match template `labels`"


def _meta(obj: Obj, old: Obj | None) -> Errs:
    if old is None:
        return m.validate_object_meta(obj.get("metadata"), names.name_is_dns_subdomain)
    return m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))


def _selector(spec: Obj, path: str, kind_word: str) -> Errs:
    sel = spec.get("selector")
    if sel is None:
        return [required(f"{path}.selector")]
    errs = m.validate_label_selector(sel, f"{path}.selector")
    if m.selector_is_empty(sel):
        errs.append(invalid(f"{path}.selector", selector_repr(sel),
                            f"empty selector is invalid for {kind_word}"))
    return errs


def _template(spec: Obj, path: str, kind: str, claim_templates: Iterable[str] = ()) -> Errs:
    tmpl = spec.get("template")
    tpath = f"{path}.template"
    if tmpl is None:
        return [required(tpath)]
    errs: Errs = []
    sel = spec.get("selector")
    labels = d(tmpl, "metadata", "labels")
    if sel is not None and not m.selector_is_empty(sel) and not m.selector_matches(sel, labels):
        errs.append(invalid(f"{tpath}.metadata.labels", as_dict(labels), NOT_MATCH))
    errs += pods.validate_pod_template_spec(tmpl, tpath, claim_templates)
    policy = d(tmpl, "spec", "restartPolicy")
    if policy and policy != "Always":
        errs.append(not_supported(f"{tpath}.spec.restartPolicy", policy, ["Always"]))
    ads = d(tmpl, "spec", "activeDeadlineSeconds")
    if ads is not None:
        errs.append(invalid(f"{tpath}.spec.activeDeadlineSeconds", ads,
                            f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs


def _int_or_percent(v: Any, path: str) -> Errs:
    if isinstance(v, str):
        return names.messages_to_errors(names.is_valid_percent(v), path, int_or_string_repr(v))
    return non_negative(v, path)


def _int_or_percent_value(v: Any) -> int | None:
    if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit():
        return int(v[:-1])
    return v if is_int(v) else None


def _not_over_100(v: Any, path: str) -> Errs:
    if isinstance(v, str) and (_int_or_percent_value(v) or 0) > 100:
        return [invalid(path, int_or_string_repr(v), "must not be greater than 100%")]
    return []


def _rolling(ru: Obj, path: str) -> Errs:
    mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
    errs = _int_or_percent(mu, f"{path}.maxUnavailable")
    errs += _int_or_percent(ms, f"{path}.maxSurge")
    if _int_or_percent_value(mu) == 0 and _int_or_percent_value(ms) == 0:
        errs.append(invalid(f"{path}.maxUnavailable", int_or_string_repr(mu),
                            "may not be 0 when `maxSurge` is 0"))
    errs += _not_over_100(mu, f"{path}.maxUnavailable")
    return errs


def _history(spec: Obj, path: str) -> Errs:
    errs = non_negative(spec.get("replicas"), f"{path}.replicas")
    errs += non_negative(spec.get("minReadySeconds"), f"{path}.minReadySeconds")
    errs += non_negative(spec.get("revisionHistoryLimit"), f"{path}.revisionHistoryLimit")
    return errs


def _selector_update(new: Obj, old: Obj | None) -> Errs:
    if old is None:
        return []
    ns, os_ = d(new, "spec", "selector"), d(old, "spec", "selector")
    if ns != os_:
        return [invalid("spec.selector", selector_repr(ns), "field is immutable")]
    return []


def validate_deployment(dep: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(dep, old)
    spec = as_dict(dep.get("spec"))
    errs += _history(spec, "spec")
    errs += _selector(spec, "spec", "deployment")
    errs += _template(spec, "spec", "ReplicaSet")
    strategy = as_dict(spec.get("strategy"))
    stype = strategy.get("type")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(forbidden("spec.strategy.rollingUpdate",
                                  "may not be specified when strategy `type` is 'Recreate'"))
    elif stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            errs.append(required("spec.strategy.rollingUpdate",
                                 "this should be defaulted and never be nil"))
        else:
            errs += _rolling(as_dict(ru), "spec.strategy.rollingUpdate")
    else:
        errs.append(not_supported("spec.strategy", stype or "", ["Recreate", "RollingUpdate"]))
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        errs += non_negative(pds, "spec.progressDeadlineSeconds")
        if is_int(pds) and pds <= (spec.get("minReadySeconds") or 0):
            errs.append(invalid("spec.progressDeadlineSeconds", pds,
                                "must be greater than minReadySeconds"))
    errs += _selector_update(dep, old)
    return errs


def validate_replica_set(rs: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(rs, old)
    spec = as_dict(rs.get("spec"))
    errs += _history(spec, "spec")
    errs += _selector(spec, "spec", "deployment")
    errs += _template(spec, "spec", "ReplicaSet")
    errs += _selector_update(rs, old)
    return errs


def validate_daemon_set(ds: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(ds, old)
    spec = as_dict(ds.get("spec"))
    errs += _selector(spec, "spec", "daemonset")
    errs += _template(spec, "spec", "DaemonSet")
    errs += non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += non_negative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    strategy = as_dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            errs.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            errs += _rolling(as_dict(ru), "spec.updateStrategy.rollingUpdate")
    elif stype != "OnDelete":
        errs.append(not_supported("spec.updateStrategy", stype or "", ["OnDelete", "RollingUpdate"]))
    errs += _selector_update(ds, old)
    return errs


STS_UPDATABLE = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                 "'template', 'updateStrategy', 'revisionHistoryLimit', "
                 "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


def validate_stateful_set(sts: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(sts, old)
    spec = as_dict(sts.get("spec"))
    policy = spec.get("podManagementPolicy")
    if not policy:
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", policy,
                            "must be 'OrderedReady' or 'Parallel'"))
    strategy = as_dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    ru = strategy.get("rollingUpdate")
    if stype == "OnDelete":
        if ru is not None:
            errs.append(invalid("spec.updateStrategy.rollingUpdate", "",
                                "only allowed for updateStrategy 'RollingUpdate'"))
    elif stype == "RollingUpdate":
        if ru is not None:
            ru = as_dict(ru)
            p = "spec.updateStrategy.rollingUpdate"
            errs += non_negative(ru.get("partition"), f"{p}.partition")
            mu = ru.get("maxUnavailable")
            if mu is not None:
                errs += _int_or_percent(mu, f"{p}.maxUnavailable")
                if _int_or_percent_value(mu) == 0:
                    errs.append(invalid(f"{p}.maxUnavailable", int_or_string_repr(mu),
                                        "must be greater than 0"))
                errs += _not_over_100(mu, f"{p}.maxUnavailable")
    elif not stype:
        errs.append(required("spec.updateStrategy"))
    else:
        errs.append(invalid("spec.updateStrategy", stype, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        for f in ("whenDeleted", "whenScaled"):
            v = as_dict(retention).get(f)
            if v not in ("Retain", "Delete"):
                errs.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{f}", v or "",
                                          ["Retain", "Delete"]))
    errs += _history(spec, "spec")
    errs += non_negative(d(spec, "ordinals", "start"), "spec.ordinals.start")
    if spec.get("serviceName"):
        errs += names.dns1123_label(spec["serviceName"], "spec.serviceName")
    errs += _selector(spec, "spec", "statefulset")
    # Upstream leaves a StatefulSet's pod spec unchecked (its TODO: "check that the
    # union of the given volumes and volumeClaims match volume mounts"); pinnace
    # checks it so, each claim template a volume its pods will have.
    claims = [d(c, "metadata", "name") for c in as_list(spec.get("volumeClaimTemplates"))]
    errs += _template(spec, "spec", "StatefulSet", claims)
    if old is not None:
        frozen = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                  "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
        ns = {k: v for k, v in spec.items() if k not in frozen}
        os_ = {k: v for k, v in as_dict(old.get("spec")).items() if k not in frozen}
        if ns != os_:
            errs.append(forbidden("spec", STS_UPDATABLE))
    return errs


def validate_controller_revision(cr: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(cr, old)
    if cr.get("data") is None and old is None:
        errs.append(required("data"))
    errs += non_negative(cr.get("revision"), "revision")
    if old is not None:
        errs += immutable(cr.get("data"), old.get("data"), "data")
    return errs


def validate_status(kind: str, obj: Obj, old: Obj) -> Errs:
    errs = m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    status = as_dict(obj.get("status"))
    if kind == "DaemonSet":
        for f in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
                  "numberReady", "observedGeneration", "updatedNumberScheduled",
                  "numberAvailable", "numberUnavailable", "collisionCount"):
            errs += non_negative(status.get(f), f"status.{f}")
    else:
        errs += validate_replica_status(status)
    return errs
