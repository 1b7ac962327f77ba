"""flowcontrol.apiserver.k8s.io/v1 (upstream's ValidateFlowSchema and
ValidatePriorityLevelConfiguration, the checks users meet)."""

from __future__ import annotations

from . import meta as m
from . import names
from ._common import Errs, Obj, as_dict, as_list, invalid, is_int, not_supported, required

_SUBJECT_KINDS = ["Group", "ServiceAccount", "User"]


def _meta(obj: Obj, old: Obj | None) -> Errs:
    if old is None:
        return m.validate_object_meta(obj.get("metadata"), names.name_is_dns_subdomain)
    return m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))


def validate_flow_schema(fs: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(fs, old)
    spec = as_dict(fs.get("spec"))
    mp = spec.get("matchingPrecedence")
    if mp is not None and (not is_int(mp) or mp <= 0):
        errs.append(invalid("spec.matchingPrecedence", mp, "must be a positive value"))
    elif is_int(mp) and mp > 10000:
        errs.append(invalid("spec.matchingPrecedence", mp, "must not be greater than 10000"))
    if not as_dict(spec.get("priorityLevelConfiguration")).get("name"):
        errs.append(required("spec.priorityLevelConfiguration.name",
                             "must reference a priority level"))
    dm = spec.get("distinguisherMethod")
    if dm is not None and as_dict(dm).get("type") not in ("ByNamespace", "ByUser"):
        errs.append(not_supported("spec.distinguisherMethod.type", as_dict(dm).get("type"),
                                  ["ByNamespace", "ByUser"]))
    for i, rule in enumerate(as_list(spec.get("rules"))):
        rule, path = as_dict(rule), f"spec.rules[{i}]"
        subjects = as_list(rule.get("subjects"))
        if not subjects:
            errs.append(required(f"{path}.subjects", "subjects must contain at least one value"))
        for j, s in enumerate(subjects):
            s, sp = as_dict(s), f"{path}.subjects[{j}]"
            kind = s.get("kind")
            if kind not in _SUBJECT_KINDS:
                errs.append(not_supported(f"{sp}.kind", kind, _SUBJECT_KINDS))
                continue
            key = {"Group": "group", "User": "user", "ServiceAccount": "serviceAccount"}[kind]
            if not as_dict(s.get(key)).get("name"):
                errs.append(required(f"{sp}.{key}.name", f"{key} name is required"))
        if not as_list(rule.get("resourceRules")) and not as_list(rule.get("nonResourceRules")):
            errs.append(required(path, "at least one of resourceRules and nonResourceRules "
                                       "has to be non-empty"))
        for j, r in enumerate(as_list(rule.get("resourceRules"))):
            r, rp = as_dict(r), f"{path}.resourceRules[{j}]"
            for key in ("verbs", "apiGroups", "resources"):
                if not as_list(r.get(key)):
                    errs.append(required(f"{rp}.{key}", f"{key} must contain at least one value"))
            if not r.get("clusterScope") and not as_list(r.get("namespaces")):
                errs.append(required(f"{rp}.namespaces", "resource rules that are not cluster "
                                                         "scoped must supply at least one "
                                                         "namespace"))
        for j, r in enumerate(as_list(rule.get("nonResourceRules"))):
            r, rp = as_dict(r), f"{path}.nonResourceRules[{j}]"
            for key in ("verbs", "nonResourceURLs"):
                if not as_list(r.get(key)):
                    errs.append(required(f"{rp}.{key}", f"{key} must contain at least one value"))
    return errs


def validate_priority_level(pl: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(pl, old)
    spec = as_dict(pl.get("spec"))
    kind = spec.get("type")
    if kind not in ("Exempt", "Limited"):
        return errs + [not_supported("spec.type", kind, ["Exempt", "Limited"])]
    if kind == "Limited":
        limited = spec.get("limited")
        if limited is None:
            return errs + [required("spec.limited", "must not be empty when type is Limited")]
        limited = as_dict(limited)
        ncs = limited.get("nominalConcurrencyShares")
        if ncs is not None and (not is_int(ncs) or ncs < 0):
            errs.append(invalid("spec.limited.nominalConcurrencyShares", ncs,
                                "must be a non-negative integer"))
        lp = limited.get("lendablePercent")
        if lp is not None and (not is_int(lp) or not 0 <= lp <= 100):
            errs.append(invalid("spec.limited.lendablePercent", lp,
                                "must be between 0 and 100, inclusive"))
        response = as_dict(limited.get("limitResponse"))
        rtype = response.get("type")
        if rtype not in ("Queue", "Reject"):
            errs.append(not_supported("spec.limited.limitResponse.type", rtype,
                                      ["Queue", "Reject"]))
        elif rtype == "Queue":
            q, qp = as_dict(response.get("queuing")), "spec.limited.limitResponse.queuing"
            if not response.get("queuing"):
                errs.append(required(qp, "must not be empty if limitResponse.type is Queue"))
            for key in ("queues", "handSize", "queueLengthLimit"):
                v = q.get(key)
                if v is not None and (not is_int(v) or v <= 0):
                    errs.append(invalid(f"{qp}.{key}", v, "must be positive"))
            if is_int(q.get("handSize")) and is_int(q.get("queues")) and \
                    q["handSize"] > q["queues"]:
                errs.append(invalid(f"{qp}.handSize", q["handSize"],
                                    f"should not be greater than queues ({q['queues']})"))
    elif spec.get("limited") is not None:
        errs.append(invalid("spec.limited", spec["limited"], "must be nil if the type is not "
                                                              "Limited"))
    return errs
