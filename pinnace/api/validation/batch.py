"""batch/v1: Job and CronJob.

The Job's generated selector (``batch.kubernetes.io/controller-uid``) is
added by the server before validation, as upstream's strategy does, so a
Job reaching ``validate_job`` must already carry a selector.
"""

from __future__ import annotations

import re
from typing import Any

from . import meta as m
from . import names, pods
from ._common import (
    Err,
    Errs,
    GoRepr,
    Obj,
    as_dict,
    as_list,
    d,
    duplicate,
    forbidden,
    invalid,
    is_int,
    non_negative,
    not_supported,
    required,
    selector_repr,
    too_long,
    too_many,
)
from .cron import CronError, parse_standard

NOT_MATCH = "`selector` does not match template `labels`"
MAX_PARALLELISM_INDEXED = 100000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
PARALLELISM_HIGH_COMPLETIONS = 10_000
MAX_FAILED_INDEXES_HIGH_COMPLETIONS = 10_000
MAX_POD_FAILURE_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_CONDITION_PATTERNS = 20
MAX_MANAGED_BY = 63
MAX_SUCCEEDED_INDEXES = 64 * 1024
MAX_SUCCESS_RULES = 20
ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
OPERATORS = ["In", "NotIn"]
CONDITION_STATUSES = ["False", "True", "Unknown"]
REPLACEMENT_POLICIES = ["Failed", "TerminatingOrFailed"]


def _quoted_list(values: list[str]) -> str:
    """A string list as Go's %q prints it: ["a" "b"]."""
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def _int32s(values: list[Any]) -> GoRepr:
    return GoRepr("[]int32{" + ", ".join(str(v) for v in values) + "}")


def _omitted(path: str, detail: str) -> Err:
    """An Invalid error that shows no value (upstream's field.OmitValueType)."""
    return Err("FieldValueInvalid", path, detail=detail)


def _job_spec(spec: Obj, path: str) -> Errs:
    errs: Errs = []
    for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
              "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += non_negative(spec.get(f), f"{path}.{f}")
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if max_failed is not None and per_index is None:
        errs.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    managed_by = spec.get("managedBy")
    if isinstance(managed_by, str):
        errs += _domain_prefixed_path(managed_by, f"{path}.managedBy")
        if len(managed_by) > MAX_MANAGED_BY:
            errs.append(too_long(f"{path}.managedBy", MAX_MANAGED_BY))
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
        elif mode == "Indexed":
            if completions is None:
                errs.append(required(f"{path}.completions",
                                     "when completion mode is Indexed"))
            if is_int(parallelism) and parallelism > MAX_PARALLELISM_INDEXED:
                errs.append(invalid(f"{path}.parallelism", parallelism,
                                    f"must be less than or equal to {MAX_PARALLELISM_INDEXED} "
                                    "when completion mode is Indexed"))
            if is_int(completions) and is_int(max_failed) and max_failed > completions:
                errs.append(invalid(f"{path}.maxFailedIndexes", max_failed,
                                    "must be less than or equal to completions"))
            if is_int(max_failed) and max_failed > MAX_FAILED_INDEXES:
                errs.append(invalid(f"{path}.maxFailedIndexes", max_failed,
                                    f"must be less than or equal to {MAX_FAILED_INDEXES}"))
            if is_int(completions) and completions > COMPLETIONS_SOFT_LIMIT and \
                    per_index is not None:
                high = (f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with "
                        "backoff limit per index")
                if max_failed is None:
                    errs.append(required(f"{path}.maxFailedIndexes", "must be specified when "
                                         f"completions is above {COMPLETIONS_SOFT_LIMIT}"))
                if is_int(parallelism) and parallelism > PARALLELISM_HIGH_COMPLETIONS:
                    errs.append(invalid(f"{path}.parallelism", parallelism, "must be less than "
                                        f"or equal to {PARALLELISM_HIGH_COMPLETIONS} {high}"))
                if is_int(max_failed) and max_failed > MAX_FAILED_INDEXES_HIGH_COMPLETIONS:
                    errs.append(invalid(f"{path}.maxFailedIndexes", max_failed,
                                        "must be less than or equal to "
                                        f"{MAX_FAILED_INDEXES_HIGH_COMPLETIONS} {high}"))
    if mode in (None, "NonIndexed"):
        if per_index is not None:
            errs.append(invalid(f"{path}.backoffLimitPerIndex", per_index,
                                "requires indexed completion mode"))
        if max_failed is not None:
            errs.append(invalid(f"{path}.maxFailedIndexes", max_failed,
                                "requires indexed completion mode"))
    pfp = spec.get("podFailurePolicy")
    if pfp is not None:
        errs += _pod_failure_policy(spec, as_dict(pfp), f"{path}.podFailurePolicy")
    sp = spec.get("successPolicy")
    if sp is not None:
        if mode != "Indexed":
            errs.append(invalid(f"{path}.successPolicy", _success_policy_repr(as_dict(sp)),
                                "requires indexed completion mode"))
        else:
            errs += _success_policy(spec, as_dict(sp), f"{path}.successPolicy")
    prp = spec.get("podReplacementPolicy")
    if prp is not None:
        if pfp is not None:
            if prp != "Failed":
                # A pod failure policy needs the failed pod to judge: only Failed goes.
                errs.append(not_supported(f"{path}.podReplacementPolicy", prp, ["Failed"]))
        elif prp not in REPLACEMENT_POLICIES:
            errs.append(not_supported(f"{path}.podReplacementPolicy", prp, REPLACEMENT_POLICIES))
    tmpl = spec.get("template")
    tpath = f"{path}.template"
    if tmpl is None:
        errs.append(required(tpath))
        return errs
    errs += pods.validate_pod_template_spec(tmpl, tpath)
    policy = d(tmpl, "spec", "restartPolicy")
    if policy in ("Always", "", None):
        # Upstream names the two a Job may use rather than refusing the value.
        errs.append(required(f"{tpath}.spec.restartPolicy",
                             'valid values: "OnFailure", "Never"'))
    elif policy not in ("OnFailure", "Never"):
        errs.append(not_supported(f"{tpath}.spec.restartPolicy", policy, ["OnFailure", "Never"]))
    elif pfp is not None and policy != "Never":
        errs.append(invalid(f"{tpath}.spec.restartPolicy", policy,
                            'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def _domain_prefixed_path(v: str, path: str) -> Errs:
    if not v:
        return [required(path)]
    host, sep, rest = v.partition("/")
    if not sep or not host or not rest:
        return [invalid(path, v, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = names.messages_to_errors(names.is_dns1123_subdomain(host), path, host)
    if not HTTP_PATH.fullmatch(rest):
        errs.append(invalid(path, rest, names.regex_error("Invalid path", HTTP_PATH.pattern)))
    return errs


INTEGER = re.compile(r"[+-]?[0-9]+")
HTTP_PATH = re.compile(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+")


def _pod_failure_policy(spec: Obj, pfp: Obj, path: str) -> Errs:
    errs: Errs = []
    rules = as_list(pfp.get("rules"))
    rpath = f"{path}.rules"
    if len(rules) > MAX_POD_FAILURE_RULES:
        errs.append(too_many(rpath, len(rules), MAX_POD_FAILURE_RULES))
    tspec = as_dict(d(spec, "template", "spec"))
    containers = {as_dict(c).get("name") for key in ("containers", "initContainers")
                  for c in as_list(tspec.get(key))}
    for i, rule in enumerate(rules):
        errs += _pod_failure_rule(spec, as_dict(rule), f"{rpath}[{i}]", containers)
    return errs


def _pod_failure_rule(spec: Obj, rule: Obj, path: str, containers: set[Any]) -> Errs:
    errs: Errs = []
    action = rule.get("action")
    apath = f"{path}.action"
    if not action:
        errs.append(required(apath, f"valid values: {_quoted_list(ACTIONS)}"))
    elif action == "FailIndex":
        if spec.get("backoffLimitPerIndex") is None:
            errs.append(invalid(apath, action, "requires the backoffLimitPerIndex to be set"))
    elif action not in ACTIONS:
        errs.append(not_supported(apath, action, ACTIONS))
    on_codes = rule.get("onExitCodes")
    on_conds = as_list(rule.get("onPodConditions"))
    if on_codes is not None:
        errs += _on_exit_codes(as_dict(on_codes), f"{path}.onExitCodes", containers)
    if on_conds:
        errs += _on_pod_conditions(on_conds, f"{path}.onPodConditions")
    if on_codes is not None and on_conds:
        errs.append(_omitted(path, "specifying both OnExitCodes and OnPodConditions is not "
                                   "supported"))
    if on_codes is None and not on_conds:
        errs.append(_omitted(path, "specifying one of OnExitCodes and OnPodConditions is "
                                   "required"))
    return errs


def _on_pod_conditions(patterns: list[Any], path: str) -> Errs:
    errs: Errs = []
    if len(patterns) > MAX_CONDITION_PATTERNS:
        errs.append(too_many(path, len(patterns), MAX_CONDITION_PATTERNS))
    for j, raw in enumerate(patterns):
        pattern = as_dict(raw)
        ppath = f"{path}[{j}]"
        errs += names.qualified_name(str(pattern.get("type") or ""), f"{ppath}.type")
        status = pattern.get("status")
        if not status:
            errs.append(required(f"{ppath}.status",
                                 f"valid values: {_quoted_list(CONDITION_STATUSES)}"))
        elif status not in CONDITION_STATUSES:
            errs.append(not_supported(f"{ppath}.status", status, CONDITION_STATUSES))
    return errs


def _on_exit_codes(req: Obj, path: str, containers: set[Any]) -> Errs:
    errs: Errs = []
    op = req.get("operator")
    if not op:
        errs.append(required(f"{path}.operator", f"valid values: {_quoted_list(OPERATORS)}"))
    elif op not in OPERATORS:
        errs.append(not_supported(f"{path}.operator", op, OPERATORS))
    name = req.get("containerName")
    if name is not None and name not in containers:
        errs.append(invalid(f"{path}.containerName", name,
                            "must be one of the container or initContainer names in the pod "
                            "template"))
    values = as_list(req.get("values"))
    vpath = f"{path}.values"
    if not values:
        errs.append(invalid(vpath, _int32s(values), "at least one value is required"))
    elif len(values) > MAX_EXIT_CODE_VALUES:
        errs.append(too_many(vpath, len(values), MAX_EXIT_CODE_VALUES))
    seen: set[Any] = set()
    ordered = True
    for j, v in enumerate(values):
        if op == "In" and v == 0:
            errs.append(invalid(f"{vpath}[{j}]", v, "must not be 0 for the In operator"))
        if v in seen:
            errs.append(duplicate(f"{vpath}[{j}]", v))
        else:
            seen.add(v)
        if j > 0 and is_int(v) and is_int(values[j - 1]) and values[j - 1] > v:
            ordered = False
    if not ordered:
        errs.append(invalid(vpath, _int32s(values), "must be ordered"))
    return errs


def _success_policy_repr(sp: Obj) -> GoRepr:
    n = len(as_list(sp.get("rules")))
    return GoRepr("batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule{" +
                  ", ".join(["batch.SuccessPolicyRule{...}"] * n) + "}}")


def _success_policy(spec: Obj, sp: Obj, path: str) -> Errs:
    errs: Errs = []
    rules = as_list(sp.get("rules"))
    rpath = f"{path}.rules"
    if not rules:
        errs.append(required(rpath, "at least one rules must be specified when the successPolicy "
                                    "is specified"))
    if len(rules) > MAX_SUCCESS_RULES:
        errs.append(too_many(rpath, len(rules), MAX_SUCCESS_RULES))
    completions = spec.get("completions")
    for i, raw in enumerate(rules):
        rule = as_dict(raw)
        path_i = f"{rpath}[{i}]"
        count, indexes = rule.get("succeededCount"), rule.get("succeededIndexes")
        if count is None and indexes is None:
            errs.append(required(path_i, "at least one of succeededCount or succeededIndexes must "
                                         "be specified"))
        total = 0
        if isinstance(indexes, str):
            ipath = f"{path_i}.succeededIndexes"
            if len(indexes) > MAX_SUCCEEDED_INDEXES:
                errs.append(too_long(ipath, MAX_SUCCEEDED_INDEXES))
            if is_int(completions):
                try:
                    total = index_count(indexes, completions)
                except ValueError as e:
                    errs.append(invalid(ipath, indexes, f"error parsing succeededIndexes: {e}"))
        if is_int(count):
            cpath = f"{path_i}.succeededCount"
            errs += non_negative(count, cpath)
            if is_int(completions) and count > completions:
                errs.append(invalid(cpath, count, f"must be less than or equal to {completions} "
                                                  "(the number of specified completions)"))
            if indexes is not None and count > total:
                errs.append(invalid(cpath, count, f"must be less than or equal to {total} (the "
                                                  "number of indexes in the specified "
                                                  "succeededIndexes field)"))
    return errs


def _index_interval(part: str, completions: int) -> tuple[int, int]:
    limits = part.split("-")
    if len(limits) > 2:
        raise ValueError(f'the fragment "{part}" violates the requirement that an index '
                         "interval can have at most two parts separated by '-'")
    bounds: list[int] = []
    for raw in limits:
        if not INTEGER.fullmatch(raw):
            raise ValueError(f'cannot convert string to integer for index: "{raw}"')
        x = int(raw)
        if x >= completions:
            raise ValueError(f'too large index: "{raw}"')
        bounds.append(x)
    if len(bounds) == 2 and bounds[0] >= bounds[1]:
        raise ValueError(f"non-increasing order, previous: {bounds[0]}, current: {bounds[1]}")
    return bounds[0], bounds[-1]


def index_count(s: str, completions: int) -> int:
    """How many indexes an interval list ("1,3-5") names; ValueError as upstream words it."""
    if not s:
        return 0
    total, last = 0, None
    for part in s.split(","):
        x, y = _index_interval(part, completions)
        if last is not None and last >= x:
            raise ValueError(f"non-increasing order, previous: {last}, current: {x}")
        total += y - x + 1
        last = y
    return total


def _intervals(s: str, completions: int) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for part in s.split(","):
        try:
            out.append(_index_interval(part, completions))
        except ValueError:
            out.append(None)  # reported by the format check
    return out


def _overlap(completed: str, failed: str, completions: int) -> int | None:
    """The first index both lists name (upstream walks both lists in order)."""
    if not completed or not failed:
        return None
    cs, fs = _intervals(completed, completions), _intervals(failed, completions)
    i = j = 0
    while i < len(cs) and j < len(fs):
        c, f = cs[i], fs[j]
        if c is None:
            i += 1
        elif f is None:
            j += 1
        elif c[0] <= f[1] and f[0] <= c[1]:
            return max(c[0], f[0])
        elif c[0] <= f[0]:
            i += 1
        else:
            j += 1
    return None


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
    completions = spec.get("completions")
    if old is None and spec.get("completionMode") == "Indexed" and is_int(completions) and \
            completions > 0:
        # Pod hostnames are "<job>-<index>": the largest index must still make a DNS label.
        name = d(job, "metadata", "name") or ""
        hostname = f"{name}-{completions - 1}"
        if name and names.is_dns1123_label(hostname):
            errs.append(invalid("metadata.name", name, "will not able to create pod with invalid "
                                                       f"DNS label: {hostname}"))
    if old is not None:
        ospec = as_dict(old.get("spec"))
        if sel != ospec.get("selector"):
            errs.append(invalid("spec.selector", selector_repr(sel), "field is immutable"))
        for f in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy",
                  "successPolicy"):
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
    if kind == "Job":
        errs += _job_status(obj, old)
    return errs


def _true(status: Obj, type_: str) -> bool:
    return any(as_dict(c).get("type") == type_ and as_dict(c).get("status") == "True"
               for c in as_list(status.get("conditions")))


def _go_time(ts: Any) -> GoRepr:
    """A metav1.Time as Go prints it ("2024-05-01 10:00:00 +0000 UTC")."""
    text = str(ts)
    return GoRepr(text[:10] + " " + text[11:19] + " +0000 UTC" if len(text) >= 19 else text)


def _uncounted_repr(unc: Obj) -> GoRepr:
    def uids(v: Any) -> str:
        items = as_list(v)
        return "[]types.UID(nil)" if not items else \
            "[]types.UID{" + ", ".join(f'"{u}"' for u in items) + "}"
    return GoRepr(f"batch.UncountedTerminatedPods{{Succeeded:{uids(unc.get('succeeded'))}, "
                  f"Failed:{uids(unc.get('failed'))}}}")


def _job_status(job: Obj, old: Obj) -> Errs:
    """Upstream's Job status rules. Most apply only when the fields they read
    change, so a status already off (written by an older server) can still
    be updated in its other fields, and a controller has time to catch up
    with a spec change (a scaled-down Job's completed indexes, say)."""
    status, ost = as_dict(job.get("status")), as_dict(old.get("status"))
    spec = as_dict(job.get("spec"))
    errs: Errs = []
    for f in ("active", "succeeded", "failed", "ready", "terminating"):
        errs += non_negative(status.get(f), f"status.{f}")
    unc = status.get("uncountedTerminatedPods")
    seen: set[Any] = set()
    for key in ("succeeded", "failed"):
        for i, uid in enumerate(as_list(as_dict(unc).get(key))):
            upath = f"status.uncountedTerminatedPods.{key}[{i}]"
            if uid == "":
                errs.append(invalid(upath, uid, "must not be empty"))
            elif uid in seen:
                errs.append(duplicate(upath, uid))
            else:
                seen.add(uid)

    def changed(f: str) -> bool:
        return status.get(f) != ost.get(f)

    complete, failed = _true(status, "Complete"), _true(status, "Failed")
    target, met = _true(status, "FailureTarget"), _true(status, "SuccessCriteriaMet")
    done, was_done = complete or failed, _true(ost, "Complete") or _true(ost, "Failed")
    done_changed = done != was_done
    complete_changed = complete != _true(ost, "Complete")
    failed_changed = failed != _true(ost, "Failed")
    target_changed = target != _true(ost, "FailureTarget")
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    start, end = status.get("startTime"), status.get("completionTime")
    cpath = "status.conditions"
    if (complete_changed or failed_changed) and complete and failed:
        errs.append(_omitted(cpath, "cannot set Complete=True and Failed=true conditions"))
    if (complete_changed or target_changed) and complete and target:
        errs.append(_omitted(cpath, "cannot set Complete=True and FailureTarget=true conditions"))
    if (complete_changed or changed("completionTime")):
        if end is not None and not complete:
            errs.append(invalid("status.completionTime", _go_time(end),
                                "cannot set completionTime when there is no Complete=True "
                                "condition"))
        if end is None and complete:
            errs.append(required("status.completionTime",
                                 "completionTime is required for Complete jobs"))
    if (changed("startTime") or changed("completionTime")) and start and end and \
            str(end) < str(start):
        errs.append(invalid("status.completionTime", _go_time(end),
                            "completionTime cannot be set before startTime"))
    if failed_changed and failed and not target:
        errs.append(_omitted(cpath, "cannot set Failed=True condition without the "
                                    "FailureTarget=true condition"))
    if complete_changed and complete and not met:
        errs.append(_omitted(cpath, "cannot set Complete=True condition without the "
                                    "SuccessCriteriaMet=true condition"))
    if (done_changed or changed("active")) and done and int(status.get("active") or 0) > 0:
        errs.append(invalid("status.active", status.get("active"),
                            "active>0 is invalid for finished job"))
    if (done_changed or changed("startTime")) and done and start is None:
        errs.append(required("status.startTime", "startTime is required for finished job"))
    if (done_changed or changed("uncountedTerminatedPods")) and done and \
            (as_list(as_dict(unc).get("succeeded")) or as_list(as_dict(unc).get("failed"))):
        errs.append(invalid("status.uncountedTerminatedPods", _uncounted_repr(as_dict(unc)),
                            "uncountedTerminatedPods needs to be empty for finished job"))
    completed_idx = status.get("completedIndexes") or ""
    failed_idx = status.get("failedIndexes")
    if changed("completedIndexes") and is_int(completions):
        try:
            index_count(str(completed_idx), completions)
        except ValueError as e:
            errs.append(invalid("status.completedIndexes", completed_idx,
                                f"error parsing completedIndexes: {e}"))
    if changed("failedIndexes") and is_int(completions) and \
            spec.get("backoffLimitPerIndex") is not None and failed_idx is not None:
        try:
            index_count(str(failed_idx), completions)
        except ValueError as e:
            errs.append(invalid("status.failedIndexes", failed_idx,
                                f"error parsing failedIndexes: {e}"))
    if changed("completedIndexes") and completed_idx and not indexed:
        errs.append(invalid("status.completedIndexes", completed_idx,
                            "cannot set non-empty completedIndexes when non-indexed completion "
                            "mode"))
    if changed("failedIndexes") and spec.get("backoffLimitPerIndex") is None and \
            failed_idx is not None:
        errs.append(invalid("status.failedIndexes", failed_idx,
                            "cannot set non-null failedIndexes when backoffLimitPerIndex is null"))
    if (changed("failedIndexes") or changed("completedIndexes")) and is_int(completions) and \
            failed_idx is not None:
        at = _overlap(str(completed_idx), str(failed_idx), completions)
        if at is not None:
            errs.append(invalid("status.failedIndexes", failed_idx,
                                f"failedIndexes and completedIndexes overlap at index: {at}"))
    if met and failed:
        errs.append(_omitted(cpath, "cannot set SuccessCriteriaMet=True and Failed=true "
                                    "conditions"))
    if met and target:
        errs.append(_omitted(cpath, "cannot set SuccessCriteriaMet=True and FailureTarget=true "
                                    "conditions"))
    if spec.get("successPolicy") is not None and not met and complete:
        errs.append(_omitted(cpath, "cannot set Complete=True for Job with SuccessPolicy unless "
                                    "SuccessCriteriaMet=True"))
    # The update itself: terminal conditions stay, counters only grow.
    for type_ in ("Failed", "Complete", "FailureTarget"):
        if _true(ost, type_) and not _true(status, type_):
            errs.append(_omitted(cpath, f"cannot disable the terminal {type_}=True condition"))
    if int(status.get("failed") or 0) < int(ost.get("failed") or 0):
        errs.append(invalid("status.failed", int(status.get("failed") or 0),
                            "cannot decrease the failed counter"))
    # An Indexed Job scaled down (completions with parallelism) loses succeeded indexes.
    elastic = indexed and completions == spec.get("parallelism")
    if not elastic and int(status.get("succeeded") or 0) < int(ost.get("succeeded") or 0):
        errs.append(invalid("status.succeeded", int(status.get("succeeded") or 0),
                            "cannot decrease the succeeded counter"))
    if end is not None and ost.get("completionTime") is not None and \
            end != ost.get("completionTime"):
        errs.append(invalid("status.completionTime", _go_time(end),
                            "completionTime cannot be mutated"))
    if ost.get("startTime") is not None and changed("startTime") and not spec.get("suspend") \
            and not _true(ost, "Suspended"):
        # (Resuming a suspended Job restarts its clock.)
        errs.append(required("status.startTime", "startTime cannot be removed for unsuspended "
                                                 "job"))
    if _true(ost, "SuccessCriteriaMet") and not met:
        errs.append(_omitted(cpath, "cannot disable the SuccessCriteriaMet=True condition"))
    if _true(ost, "Complete") and not _true(ost, "SuccessCriteriaMet") and met:
        errs.append(_omitted(cpath, "cannot set SuccessCriteriaMet=True for Job already has "
                                    "Complete=true conditions"))
    return errs


_ = forbidden
