"""The smaller groups: coordination, discovery, policy, autoscaling,
networking, RBAC, storage, scheduling, events.k8s.io."""

from __future__ import annotations

from typing import Any

from . import meta as m
from . import names
from ._common import (
    Errs,
    GoRepr,
    Obj,
    as_dict,
    as_list,
    d,
    duplicate,
    forbidden,
    go_repr,
    immutable,
    int_or_string_repr,
    invalid,
    is_int,
    non_negative,
    not_supported,
    port_errors,
    required,
    too_many,
)
from .pods import PROTOCOLS

RBAC_GROUP = "rbac.authorization.k8s.io"


def _meta(obj: Obj, old: Obj | None, check: names.NameCheck = names.name_is_dns_subdomain) -> Errs:
    if old is None:
        return m.validate_object_meta(obj.get("metadata"), check)
    return m.validate_object_meta_update(obj.get("metadata"), old.get("metadata"))


def _int_or_percent(v: Any, path: str) -> Errs:
    if isinstance(v, str):
        return names.messages_to_errors(names.is_valid_percent(v), path, int_or_string_repr(v))
    return non_negative(v, path)


# coordination.k8s.io ------------------------------------------------------

def validate_lease(lease: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(lease, old)
    spec = as_dict(lease.get("spec"))
    dur = spec.get("leaseDurationSeconds")
    if dur is not None and (not is_int(dur) or dur <= 0):
        errs.append(invalid("spec.leaseDurationSeconds", dur, "must be greater than 0"))
    errs += non_negative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    strategy = spec.get("strategy")
    if strategy is not None and strategy != "OldestEmulationVersion":
        errs.append(not_supported("spec.strategy", strategy, ["OldestEmulationVersion"]))
    return errs


# discovery.k8s.io ---------------------------------------------------------

def validate_endpoint_slice(es: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(es, old)
    atype = es.get("addressType")
    if old is None:
        errs += m.supported("addressType", atype, ["FQDN", "IPv4", "IPv6"])
    else:
        errs += immutable(atype, old.get("addressType"), "addressType")
    endpoints = as_list(es.get("endpoints"))
    if len(endpoints) > 1000:
        errs.append(too_many("endpoints", len(endpoints), 1000))
    for i, ep in enumerate(endpoints):
        ep = as_dict(ep)
        p = f"endpoints[{i}]"
        addrs = as_list(ep.get("addresses"))
        if not addrs:
            errs.append(required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(addrs) > 100:
            errs.append(too_many(f"{p}.addresses", len(addrs), 100))
        for j, a in enumerate(addrs):
            ap = f"{p}.addresses[{j}]"
            if atype in ("IPv4", "IPv6"):
                msgs = names.is_valid_ip(a)
                if not msgs and (":" in a) != (atype == "IPv6"):
                    msgs = [f"must be an {atype} address"]
                errs += names.messages_to_errors(msgs, ap, a)
            elif atype == "FQDN":
                errs += names.dns1123_subdomain(a, ap)
        if ep.get("hostname"):
            errs += names.dns1123_label(ep["hostname"], f"{p}.hostname")
        if ep.get("nodeName"):
            errs += names.dns1123_subdomain(ep["nodeName"], f"{p}.nodeName")
    ports = as_list(es.get("ports"))
    if len(ports) > 20000:
        errs.append(too_many("ports", len(ports), 20000))
    seen: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        p = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            errs += names.dns1123_label(name, f"{p}.name")
        if name in seen:
            errs.append(duplicate(f"{p}.name", name))
        seen.add(name)
        proto = port.get("protocol")
        if proto is None:
            errs.append(required(f"{p}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", proto, PROTOCOLS))
        if port.get("port") is not None:
            errs += port_errors(port["port"], f"{p}.port")
    return errs


# policy -------------------------------------------------------------------

def validate_pdb(pdb: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(pdb, old)
    spec = as_dict(pdb.get("spec"))
    mina, maxu = spec.get("minAvailable"), spec.get("maxUnavailable")
    if mina is not None and maxu is not None:
        errs.append(invalid("spec", GoRepr("policy.PodDisruptionBudgetSpec{...}"),
                            "minAvailable and maxUnavailable cannot be both set"))
    for f, v in (("minAvailable", mina), ("maxUnavailable", maxu)):
        if v is not None:
            errs += _int_or_percent(v, f"spec.{f}")
            if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit() and int(v[:-1]) > 100:
                errs.append(invalid(f"spec.{f}", int_or_string_repr(v), "must not be greater than 100%"))
    errs += m.validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        errs.append(not_supported("spec.unhealthyPodEvictionPolicy", policy,
                                  ["AlwaysAllow", "IfHealthyBudget"]))
    return errs


# autoscaling/v2 -------------------------------------------------------------

METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]
_METRIC_FIELD = {"ContainerResource": "containerResource", "External": "external",
                 "Object": "object", "Pods": "pods", "Resource": "resource"}


def _target(t: Any, path: str) -> Errs:
    t = as_dict(t)
    errs: Errs = []
    ttype = t.get("type")
    if not ttype:
        errs.append(required(f"{path}.type", "must specify a metric target type"))
    elif ttype not in ("Utilization", "Value", "AverageValue"):
        errs.append(not_supported(f"{path}.type", ttype, ["AverageValue", "Utilization", "Value"]))
    au = t.get("averageUtilization")
    if au is not None and (not is_int(au) or au <= 0):
        errs.append(invalid(f"{path}.averageUtilization", au, "must be greater than 0"))
    if au is None and t.get("value") is None and t.get("averageValue") is None and ttype:
        errs.append(required(path, "must set either a target value or averageValue"))
    return errs


def validate_hpa(hpa: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(hpa, old)
    spec = as_dict(hpa.get("spec"))
    ref = as_dict(spec.get("scaleTargetRef"))
    for f in ("kind", "name"):
        v = ref.get(f) or ""
        if not v:
            errs.append(required(f"spec.scaleTargetRef.{f}"))
        else:
            errs += names.messages_to_errors(names.path_segment_name(v, False),
                                             f"spec.scaleTargetRef.{f}", v)
    minr, maxr = spec.get("minReplicas"), spec.get("maxReplicas")
    if minr is not None and (not is_int(minr) or minr < 1):
        errs.append(invalid("spec.minReplicas", minr, "must be greater than or equal to 1"))
    if not is_int(maxr) or maxr < 1:
        errs.append(invalid("spec.maxReplicas", maxr if maxr is not None else 0,
                            "must be greater than 0"))
    elif is_int(minr) and maxr < minr:
        errs.append(invalid("spec.maxReplicas", maxr,
                            "must be greater than or equal to `minReplicas`"))
    for i, metric in enumerate(as_list(spec.get("metrics"))):
        metric = as_dict(metric)
        p = f"spec.metrics[{i}]"
        mtype = metric.get("type")
        if not mtype:
            errs.append(required(f"{p}.type", "must specify a metric source type"))
            continue
        if mtype not in METRIC_TYPES:
            errs.append(not_supported(f"{p}.type", mtype, METRIC_TYPES))
            continue
        fld = _METRIC_FIELD[mtype]
        src = metric.get(fld)
        if src is None:
            errs.append(required(f"{p}.{fld}", "must populate information for the given metric source"))
            continue
        others = [f for f in _METRIC_FIELD.values() if f != fld and metric.get(f) is not None]
        if others:
            errs.append(forbidden(f"{p}.{others[0]}",
                                  "must populate the given metric source only"))
        if mtype in ("Resource", "ContainerResource") and not as_dict(src).get("name"):
            errs.append(required(f"{p}.{fld}.name", "must specify a resource name"))
        if mtype == "ContainerResource" and not as_dict(src).get("container"):
            errs.append(required(f"{p}.{fld}.container", "must specify a container"))
        errs += _target(as_dict(src).get("target"), f"{p}.{fld}.target")
    behavior = as_dict(spec.get("behavior"))
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction)
        if rules is None:
            continue
        rules = as_dict(rules)
        p = f"spec.behavior.{direction}"
        sw = rules.get("stabilizationWindowSeconds")
        if is_int(sw) and not 0 <= sw <= 3600:
            errs.append(invalid(f"{p}.stabilizationWindowSeconds", sw,
                                "must be less than or equal to 3600" if sw > 0
                                else "must be greater than or equal to zero"))
        sp = rules.get("selectPolicy")
        if sp is not None and sp not in ("Max", "Min", "Disabled"):
            errs.append(not_supported(f"{p}.selectPolicy", sp, ["Disabled", "Max", "Min"]))
        for j, pol in enumerate(as_list(rules.get("policies"))):
            pol = as_dict(pol)
            pp = f"{p}.policies[{j}]"
            if pol.get("type") not in ("Pods", "Percent"):
                errs.append(not_supported(f"{pp}.type", pol.get("type") or "", ["Percent", "Pods"]))
            if not is_int(pol.get("value")) or pol["value"] <= 0:
                errs.append(invalid(f"{pp}.value", pol.get("value"), "must be greater than zero"))
            ps = pol.get("periodSeconds")
            if not is_int(ps) or not 0 < ps <= 1800:
                errs.append(invalid(f"{pp}.periodSeconds", ps,
                                    "must be greater than zero" if not is_int(ps) or ps <= 0
                                    else "must be less than or equal to 1800"))
    return errs


# networking.k8s.io ----------------------------------------------------------

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def _ingress_backend(b: Any, path: str) -> Errs:
    b = as_dict(b)
    errs: Errs = []
    svc, res = b.get("service"), b.get("resource")
    if svc is not None and res is not None:
        return [invalid(path, GoRepr("networking.IngressBackend{...}"),
                        "cannot set both resource and service backends")]
    if svc is not None:
        svc = as_dict(svc)
        if not svc.get("name"):
            errs.append(required(f"{path}.service.name"))
        else:
            errs += names.messages_to_errors(names.is_dns1035_label(svc["name"]),
                                             f"{path}.service.name", svc["name"])
        port = as_dict(svc.get("port"))
        pname, pnum = port.get("name"), port.get("number")
        if pname and pnum:
            errs.append(invalid(f"{path}.service.port", GoRepr("networking.ServiceBackendPort{...}"),
                                "cannot set both port name & port number"))
        elif pname:
            errs += names.messages_to_errors(names.is_valid_port_name(pname),
                                             f"{path}.service.port.name", pname)
        elif pnum is not None:
            errs += port_errors(pnum, f"{path}.service.port.number")
        else:
            errs.append(required(f"{path}.service.port", "port name or number is required"))
    elif res is not None:
        res = as_dict(res)
        for f in ("kind", "name"):
            if not res.get(f):
                errs.append(required(f"{path}.resource.{f}"))
    else:
        errs.append(invalid(path, GoRepr("networking.IngressBackend{...}"),
                            "resource or service backend is required"))
    return errs


def validate_ingress(ing: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(ing, old)
    spec = as_dict(ing.get("spec"))
    rules = as_list(spec.get("rules"))
    if spec.get("defaultBackend") is None and not rules:
        errs.append(invalid("spec", GoRepr("networking.IngressSpec{...}"),
                            "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += _ingress_backend(spec["defaultBackend"], "spec.defaultBackend")
    if spec.get("ingressClassName"):
        errs += names.dns1123_subdomain(spec["ingressClassName"], "spec.ingressClassName")
    for i, rule in enumerate(rules):
        rule = as_dict(rule)
        p = f"spec.rules[{i}]"
        host = rule.get("host") or ""
        if host:
            msgs = (names.is_wildcard_dns1123_subdomain(host) if host.startswith("*")
                    else names.is_dns1123_subdomain(host))
            errs += names.messages_to_errors(msgs, f"{p}.host", host)
        http = rule.get("http")
        if http is None:
            continue
        paths = as_list(as_dict(http).get("paths"))
        if not paths:
            errs.append(required(f"{p}.http.paths"))
        for j, hp in enumerate(paths):
            hp = as_dict(hp)
            pp = f"{p}.http.paths[{j}]"
            ptype = hp.get("pathType")
            path_s = hp.get("path") or ""
            if ptype is None:
                errs.append(required(f"{pp}.pathType", "pathType must be specified"))
            elif ptype not in PATH_TYPES:
                errs.append(not_supported(f"{pp}.pathType", ptype, PATH_TYPES))
            if ptype in ("Exact", "Prefix") and not path_s.startswith("/") or path_s and not path_s.startswith("/"):
                errs.append(invalid(f"{pp}.path", path_s, "must be an absolute path"))
            errs += _ingress_backend(hp.get("backend"), f"{pp}.backend")
    for i, tls in enumerate(as_list(spec.get("tls"))):
        for j, host in enumerate(as_list(as_dict(tls).get("hosts"))):
            msgs = (names.is_wildcard_dns1123_subdomain(host) if host.startswith("*")
                    else names.is_dns1123_subdomain(host))
            errs += names.messages_to_errors(msgs, f"spec.tls[{i}].hosts[{j}]", host)
    return errs


def validate_ingress_class(ic: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(ic, old)
    ctrl = d(ic, "spec", "controller") or ""
    if not ctrl:
        errs.append(required("spec.controller"))
    elif len(ctrl) > 250:
        errs.append(GoTooLong("spec.controller", 250))
    elif "/" not in ctrl or not ctrl.split("/", 1)[0] or names.is_dns1123_subdomain(ctrl.split("/", 1)[0]):
        errs.append(invalid("spec.controller", ctrl,
                            'must be a domain-prefixed path (such as "acme.io/foo")'))
    if old is not None:
        errs += immutable(d(ic, "spec", "controller"), d(old, "spec", "controller"), "spec.controller")
    return errs


def GoTooLong(path: str, n: int) -> Any:
    from ._common import too_long
    return too_long(path, n)


def validate_network_policy(np_: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(np_, old)
    spec = as_dict(np_.get("spec"))
    errs += m.validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(as_list(spec.get(direction))):
            rule = as_dict(rule)
            p = f"spec.{direction}[{i}]"
            for j, port in enumerate(as_list(rule.get("ports"))):
                port = as_dict(port)
                pp = f"{p}.ports[{j}]"
                proto = port.get("protocol")
                if proto is not None and proto not in PROTOCOLS:
                    errs.append(not_supported(f"{pp}.protocol", proto, PROTOCOLS))
                pv = port.get("port")
                if isinstance(pv, str):
                    errs += names.messages_to_errors(names.is_valid_port_name(pv), f"{pp}.port", pv)
                elif pv is not None:
                    errs += port_errors(pv, f"{pp}.port")
                end = port.get("endPort")
                if end is not None:
                    if isinstance(pv, str) or pv is None:
                        errs.append(required(f"{pp}.port", "must be specified when endPort is specified"))
                    elif is_int(end) and end < pv:
                        errs.append(invalid(f"{pp}.endPort", end,
                                            "must be greater than or equal to `port`"))
            for j, peer in enumerate(as_list(rule.get(peers_key))):
                peer = as_dict(peer)
                pp = f"{p}.{peers_key}[{j}]"
                if not any(peer.get(k) is not None for k in ("podSelector", "namespaceSelector", "ipBlock")):
                    errs.append(required(pp, "must specify a peer"))
                elif peer.get("ipBlock") is not None and (peer.get("podSelector") is not None
                                                          or peer.get("namespaceSelector") is not None):
                    errs.append(forbidden(pp, "may not specify both ipBlock and another peer"))
                errs += m.validate_label_selector(peer.get("podSelector"), f"{pp}.podSelector")
                errs += m.validate_label_selector(peer.get("namespaceSelector"), f"{pp}.namespaceSelector")
    types = as_list(spec.get("policyTypes"))
    if len(types) > 2:
        errs.append(invalid("spec.policyTypes", GoRepr(go_repr(types)), "may not specify more than two policyTypes"))
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            errs.append(not_supported(f"spec.policyTypes[{i}]", t, ["Egress", "Ingress"]))
    return errs


# rbac.authorization.k8s.io --------------------------------------------------

def _rules(rules: list[Any], namespaced: bool) -> Errs:
    errs: Errs = []
    for i, rule in enumerate(rules):
        rule = as_dict(rule)
        p = f"rules[{i}]"
        if not as_list(rule.get("verbs")):
            errs.append(required(f"{p}.verbs", "verbs must contain at least one value"))
        urls = as_list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                errs.append(invalid(f"{p}.nonResourceURLs", GoRepr(go_repr(urls)),
                                    "namespaced rules cannot apply to non-resource URLs"))
            if as_list(rule.get("apiGroups")) or as_list(rule.get("resources")) \
                    or as_list(rule.get("resourceNames")):
                errs.append(invalid(f"{p}.nonResourceURLs", GoRepr(go_repr(urls)),
                                    "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not as_list(rule.get("apiGroups")):
            errs.append(required(f"{p}.apiGroups", "resource rules must supply at least one api group"))
        if not as_list(rule.get("resources")):
            errs.append(required(f"{p}.resources", "resource rules must supply at least one resource"))
    return errs


def validate_role(role: Obj, old: Obj | None = None, namespaced: bool = True) -> Errs:
    errs = _meta(role, old, names.path_segment_name)
    errs += _rules(as_list(role.get("rules")), namespaced)
    if not namespaced and role.get("aggregationRule") is not None:
        sels = as_list(as_dict(role["aggregationRule"]).get("clusterRoleSelectors"))
        if not sels:
            errs.append(required("aggregationRule.clusterRoleSelectors",
                                 "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, sel in enumerate(sels):
            errs += m.validate_label_selector(sel, f"aggregationRule.clusterRoleSelectors[{i}]")
        if as_list(role.get("rules")) and old is None:
            errs.append(forbidden("rules", "rules must be empty for aggregated roles"))
    return errs


def _role_ref_repr(ref: Obj) -> GoRepr:
    return GoRepr(f'rbac.RoleRef{{APIGroup:{go_repr(ref.get("apiGroup", ""))}, '
                  f'Kind:{go_repr(ref.get("kind", ""))}, Name:{go_repr(ref.get("name", ""))}}}')


def validate_role_binding(rb: Obj, old: Obj | None = None, namespaced: bool = True) -> Errs:
    errs = _meta(rb, old, names.path_segment_name)
    ref = as_dict(rb.get("roleRef"))
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", [RBAC_GROUP]))
    kinds = ["ClusterRole", "Role"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name"))
    else:
        errs += names.messages_to_errors(names.path_segment_name(ref["name"], False),
                                         "roleRef.name", ref["name"])
    for i, subj in enumerate(as_list(rb.get("subjects"))):
        subj = as_dict(subj)
        p = f"subjects[{i}]"
        name = subj.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        kind = subj.get("kind")
        if kind == "ServiceAccount":
            if name:
                errs += names.dns1123_subdomain(name, f"{p}.name")
            if subj.get("apiGroup"):
                errs.append(not_supported(f"{p}.apiGroup", subj["apiGroup"], [""]))
            if not namespaced and not subj.get("namespace"):
                errs.append(required(f"{p}.namespace"))
        elif kind in ("User", "Group"):
            if subj.get("apiGroup") != RBAC_GROUP:
                errs.append(not_supported(f"{p}.apiGroup", subj.get("apiGroup") or "", [RBAC_GROUP]))
        else:
            errs.append(not_supported(f"{p}.kind", kind or "", ["ServiceAccount", "User", "Group"]))
    if old is not None and as_dict(old.get("roleRef")) != ref:
        errs.append(invalid("roleRef", _role_ref_repr(ref), "cannot change roleRef"))
    return errs


# storage.k8s.io, scheduling.k8s.io --------------------------------------------

def validate_storage_class(sc: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(sc, old)
    prov = sc.get("provisioner") or ""
    if not prov:
        errs.append(required("provisioner"))
    elif len(prov) > 63:
        errs.append(GoTooLong("provisioner", 63))
    else:
        errs += names.qualified_name(prov, "provisioner")
    rp = sc.get("reclaimPolicy")
    if rp is not None and rp not in ("Delete", "Retain"):
        errs.append(not_supported("reclaimPolicy", rp, ["Delete", "Retain"]))
    vbm = sc.get("volumeBindingMode")
    if vbm is not None and vbm not in ("Immediate", "WaitForFirstConsumer"):
        errs.append(not_supported("volumeBindingMode", vbm, ["Immediate", "WaitForFirstConsumer"]))
    if old is not None:
        for f in ("parameters", "provisioner", "reclaimPolicy"):
            if sc.get(f) != old.get(f):
                errs.append(forbidden(f, f"updates to {f} are forbidden."))
        errs += immutable(sc.get("volumeBindingMode"), old.get("volumeBindingMode"), "volumeBindingMode")
    return errs


HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2_000_001_000,
                           "system-cluster-critical": 2_000_000_000}


def validate_priority_class(pc: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(pc, old)
    name = d(pc, "metadata", "name") or ""
    value = pc.get("value")
    if old is None:
        if name.startswith("system-") and name not in SYSTEM_PRIORITY_CLASSES:
            errs.append(forbidden("metadata.name",
                                  "priority class names with 'system-' prefix are reserved"))
        elif name in SYSTEM_PRIORITY_CLASSES:
            if value != SYSTEM_PRIORITY_CLASSES[name]:
                errs.append(forbidden("value", f"value of {name} priority class must be "
                                               f"{SYSTEM_PRIORITY_CLASSES[name]}"))
        elif is_int(value) and value > HIGHEST_USER_PRIORITY:
            errs.append(forbidden("value", "maximum allowed value of a user defined priority is "
                                           f"{HIGHEST_USER_PRIORITY}"))
    pp = pc.get("preemptionPolicy")
    if pp is not None and pp not in ("Never", "PreemptLowerPriority"):
        errs.append(not_supported("preemptionPolicy", pp, ["Never", "PreemptLowerPriority"]))
    if old is not None:
        if value != old.get("value"):
            errs.append(forbidden("value", "may not be changed in an update."))
        errs += immutable(pp, old.get("preemptionPolicy"), "preemptionPolicy")
    return errs


def validate_runtime_class(rc: Obj, old: Obj | None = None) -> Errs:
    """node.k8s.io RuntimeClass: the handler is a DNS label, immutable;
    overhead is a resource list; scheduling's node selector and
    tolerations are those of a pod."""
    from .pods import _quantity_errors, _resource_name_errors, _validate_tolerations

    if old is not None:
        return _meta(rc, old) + immutable(rc.get("handler"), old.get("handler"), "handler")
    errs = _meta(rc, old)
    handler = rc.get("handler")
    errs += names.messages_to_errors(names.is_dns1123_label(handler if isinstance(handler, str)
                                                            else ""), "handler", handler or "")
    for res, q in as_dict(as_dict(rc.get("overhead")).get("podFixed")).items():
        errs += _resource_name_errors(res, f"overhead.podFixed[{res}]")
        errs += _quantity_errors(res, q, f"overhead.podFixed[{res}]")
    sched = as_dict(rc.get("scheduling"))
    errs += m.validate_labels(sched.get("nodeSelector"), "scheduling.nodeSelector")
    errs += _validate_tolerations(as_list(sched.get("tolerations")), "scheduling.tolerations")
    return errs


def validate_api_service(svc: Obj, old: Obj | None = None) -> Errs:
    """apiregistration.k8s.io APIService (ValidateAPIService)."""
    spec = as_dict(svc.get("spec"))
    group, version = spec.get("group") or "", spec.get("version") or ""
    required_name = f"{version}.{group}"

    def name_check(name: str, prefix: bool) -> list[str]:
        failures = names.path_segment_name(name, prefix)
        if failures:
            return failures
        return [] if name == required_name else \
            [f'must be `spec.version+"."+spec.group`: "{required_name}"']

    if old is None:
        errs = m.validate_object_meta(svc.get("metadata"), name_check)
    else:
        errs = m.validate_object_meta_update(svc.get("metadata"), old.get("metadata"))
        name = d(svc, "metadata", "name") or ""
        for msg in name_check(name, False):
            errs.append(invalid("metadata.name", name, msg))
    if not group and version != "v1":
        errs.append(required("spec.group", "only v1 may have an empty group and it better be "
                                           "legacy kube"))
    if group:
        errs += names.messages_to_errors(names.is_dns1123_subdomain(group), "spec.group", group)
    errs += names.messages_to_errors(names.is_dns1123_label(version), "spec.version", version)
    gp, vp = spec.get("groupPriorityMinimum"), spec.get("versionPriority")
    if not is_int(gp) or not 0 < gp <= 20000:
        errs.append(invalid("spec.groupPriorityMinimum", gp,
                            "must be positive and less than 20000"))
    if not is_int(vp) or not 0 < vp <= 1000:
        errs.append(invalid("spec.versionPriority", vp, "must be positive and less than 1000"))
    service = spec.get("service")
    if service is None:
        if spec.get("caBundle"):
            errs.append(invalid("spec.caBundle", f"{len(spec['caBundle'])} bytes",
                                "local APIServices may not have a caBundle"))
        if spec.get("insecureSkipTLSVerify"):
            errs.append(invalid("spec.insecureSkipTLSVerify", True,
                                "local APIServices may not have insecureSkipTLSVerify"))
        return errs
    service = as_dict(service)
    if not service.get("namespace"):
        errs.append(required("spec.service.namespace", ""))
    if not service.get("name"):
        errs.append(required("spec.service.name", ""))
    if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
        errs.append(invalid("spec.insecureSkipTLSVerify", True,
                            "may not be true if caBundle is present"))
    return errs


def validate_csi_driver(drv: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(drv, old)
    if old is not None:
        for f in ("attachRequired", "podInfoOnMount", "volumeLifecycleModes", "fsGroupPolicy"):
            errs += immutable(d(drv, "spec", f), d(old, "spec", f), f"spec.{f}")
    return errs


def validate_volume_attachment(va: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(va, old)
    spec = as_dict(va.get("spec"))
    if not spec.get("attacher"):
        errs.append(required("spec.attacher"))
    if not spec.get("nodeName"):
        errs.append(required("spec.nodeName"))
    src = as_dict(spec.get("source"))
    if src.get("persistentVolumeName") is None and src.get("inlineVolumeSpec") is None:
        errs.append(required("spec.source", "must specify exactly one of inlineVolumeSpec and persistentVolumeName"))
    if old is not None:
        errs += immutable(spec, as_dict(old.get("spec")), "spec")
    return errs


# events.k8s.io/v1 --------------------------------------------------------------

def validate_events_v1(ev: Obj, old: Obj | None = None) -> Errs:
    """Validation of an event written through events.k8s.io/v1."""
    errs = _meta(ev, old)
    if old is None:
        if not ev.get("eventTime"):
            errs.append(required("eventTime"))
        rc = ev.get("reportingController") or ""
        if not rc:
            errs.append(required("reportingController"))
        else:
            errs += names.qualified_name(rc, "reportingController")
        if not ev.get("reportingInstance"):
            errs.append(required("reportingInstance"))
        if not ev.get("action"):
            errs.append(required("action"))
        if not ev.get("reason"):
            errs.append(required("reason"))
    etype = ev.get("type")
    if etype not in ("Normal", "Warning"):
        errs.append(not_supported("type", etype or "", ["Normal", "Warning"]))
    if len(ev.get("note") or "") > 1024:
        from ._common import too_long
        errs.append(too_long("note", 1024))
    return errs
