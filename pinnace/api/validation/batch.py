"""batch/v1: Job and CronJob.

The Job's generated selector (``batch.kubernetes.io/controller-uid``) is
added by the server before validation, as upstream's strategy does, so a
Job reaching ``validate_job`` must already carry a selector.
"""

from __future__ import annotations

from . import meta as m
from . import names, pods
from ._common import (
    Errs,
    GoRepr,
    Obj,
    as_dict,
    d,
    forbidden,
    invalid,
    is_int,
    non_negative,
    not_supported,
    required,
    selector_repr,
)
from .cron import CronError, parse_standard

NOT_MATCH = "`selector` does not match template `labels`"
MAX_PARALLELISM_INDEXED = 100000


def _job_spec(spec: Obj, path: str) -> Errs:
    errs: Errs = []
    for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
              "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += non_negative(spec.get(f), f"{path}.{f}")
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
        elif mode == "Indexed":
            if spec.get("completions") is None:
                errs.append(required(f"{path}.completions",
                                     "when completion mode is Indexed"))
            par = spec.get("parallelism")
            if is_int(par) and par > MAX_PARALLELISM_INDEXED:
                errs.append(invalid(f"{path}.parallelism", par,
                                    f"must be less than or equal to {MAX_PARALLELISM_INDEXED} "
                                    "when completion mode is Indexed"))
    prp = spec.get("podReplacementPolicy")
    if prp is not None and prp not in ("TerminatingOrFailed", "Failed"):
        errs.append(not_supported(f"{path}.podReplacementPolicy", prp,
                                  ["Failed", "TerminatingOrFailed"]))
    tmpl = spec.get("template")
    tpath = f"{path}.template"
    if tmpl is None:
        errs.append(required(tpath))
        return errs
    errs += pods.validate_pod_template_spec(tmpl, tpath)
    policy = d(tmpl, "spec", "restartPolicy")
    if policy not in ("OnFailure", "Never"):
        errs.append(not_supported(f"{tpath}.spec.restartPolicy", policy or "", ["OnFailure", "Never"]))
    return errs


def validate_job(job: Obj, old: Obj | None = None) -> Errs:
    if old is None:
        errs = m.validate_object_meta(job.get("metadata"), names.name_is_dns_subdomain)
    else:
        errs = m.validate_object_meta_update(job.get("metadata"), old.get("metadata"))
    spec = as_dict(job.get("spec"))
    sel = spec.get("selector")
    if sel is None:
        errs.append(required("spec.selector"))
    else:
        errs += m.validate_label_selector(sel, "spec.selector")
        labels = d(spec, "template", "metadata", "labels")
        if not m.selector_matches(sel, labels):
            errs.append(invalid("spec.template.metadata.labels", as_dict(labels), NOT_MATCH))
    errs += _job_spec(spec, "spec")
    if old is not None:
        ospec = as_dict(old.get("spec"))
        if sel != ospec.get("selector"):
            errs.append(invalid("spec.selector", selector_repr(sel), "field is immutable"))
        for f in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "successPolicy"):
            if spec.get(f) != ospec.get(f):
                errs.append(invalid(f"spec.{f}", spec.get(f), "field is immutable"))
        if spec.get("completions") != ospec.get("completions") and \
                not (spec.get("completionMode") == "Indexed"
                     and spec.get("completions") == spec.get("parallelism")):
            errs.append(invalid("spec.completions", spec.get("completions"), "field is immutable"))
        if spec.get("template") != ospec.get("template") and not _may_change_template(spec, ospec):
            errs.append(invalid("spec.template", GoRepr("core.PodTemplateSpec{...}"),
                                "field is immutable"))
    return errs


def _may_change_template(spec: Obj, ospec: Obj) -> bool:
    """Suspended jobs that never started may change their scheduling directives."""
    if not spec.get("suspend"):
        return False
    allowed = ("nodeSelector", "affinity", "tolerations", "schedulingGates")
    a = {k: v for k, v in as_dict(d(spec, "template", "spec")).items() if k not in allowed}
    b = {k: v for k, v in as_dict(d(ospec, "template", "spec")).items() if k not in allowed}
    return a == b


def validate_cron_job(cj: Obj, old: Obj | None = None) -> Errs:
    if old is None:
        errs = m.validate_object_meta(cj.get("metadata"), names.name_is_dns_subdomain)
        name = d(cj, "metadata", "name") or ""
        if len(name) > 52:
            errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    else:
        errs = m.validate_object_meta_update(cj.get("metadata"), old.get("metadata"))
    spec = as_dict(cj.get("spec"))
    schedule = spec.get("schedule") or ""
    if not schedule:
        errs.append(required("spec.schedule"))
    else:
        if "TZ" in schedule and (old is None or schedule != d(old, "spec", "schedule")):
            errs.append(invalid("spec.schedule", schedule,
                                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
        try:
            parse_standard(schedule)
        except CronError as e:
            errs.append(invalid("spec.schedule", schedule, str(e)))
    tz = spec.get("timeZone")
    if tz is not None:
        errs += _time_zone(tz)
    errs += m.supported("spec.concurrencyPolicy", spec.get("concurrencyPolicy"),
                        ["Allow", "Forbid", "Replace"])
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += non_negative(spec.get(f), f"spec.{f}")
    jt = as_dict(spec.get("jobTemplate"))
    jspec = as_dict(jt.get("spec"))
    errs += m.validate_labels(d(jt, "metadata", "labels"), "spec.jobTemplate.metadata.labels")
    errs += _job_spec(jspec, "spec.jobTemplate.spec")
    if jspec.get("selector") is not None:
        errs.append(invalid("spec.jobTemplate.spec.selector", selector_repr(jspec["selector"]),
                            "`selector` will be auto-generated"))
    if jspec.get("manualSelector") is True:
        errs.append(not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"]))
    return errs


def _time_zone(tz: str) -> Errs:
    import zoneinfo
    if tz == "" or tz.lower() == "local":
        return [invalid("spec.timeZone", tz, "unknown time zone " + tz)]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid("spec.timeZone", tz, "unknown time zone " + tz)]
    return []


def validate_status(kind: str, obj: Obj, old: Obj) -> Errs:
    errs = m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    status = as_dict(obj.get("status"))
    if kind == "Job":
        for f in ("active", "succeeded", "failed", "ready", "terminating"):
            errs += non_negative(status.get(f), f"status.{f}")
    return errs


_ = forbidden
