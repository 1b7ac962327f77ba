"""Validation of the core/v1 kinds other than the pod spec itself."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from pinnace.api import quantity

from . import meta as m
from . import names, pods
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
    invalid,
    is_int,
    non_negative,
    not_supported,
    port_errors,
    required,
    too_long,
)

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
MAX_SECRET_SIZE = 1024 * 1024
ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _meta(obj: Obj, check: names.NameCheck = names.name_is_dns_subdomain) -> Errs:
    return m.validate_object_meta(obj.get("metadata"), check)


def _meta_update(new: Obj, old: Obj) -> Errs:
    return m.validate_object_meta_update(new.get("metadata"), old.get("metadata"))


# Service ---------------------------------------------------------------------

def _service_port_repr(port: Obj) -> GoRepr:
    return GoRepr(f'core.ServicePort{{Name:"", Protocol:{go_repr(port.get("protocol", ""))}, '
                  f'AppProtocol:(*string)(nil), Port:{port.get("port", 0)}, '
                  'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')


def validate_service(svc: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(svc, names.name_is_dns1035_label)
    spec = as_dict(svc.get("spec"))
    stype = spec.get("type") or ""
    cip = spec.get("clusterIP") or ""
    headless = cip == "None"
    ports = as_list(spec.get("ports"))
    if not ports and not headless and stype != "ExternalName":
        errs.append(required("spec.ports"))
    if stype == "ExternalName":
        if cip:
            errs.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        ext = spec.get("externalName") or ""
        if not ext:
            errs.append(required("spec.externalName"))
        else:
            errs += names.dns1123_subdomain(ext.rstrip("."), "spec.externalName")
    elif stype in ("NodePort", "LoadBalancer") and headless:
        errs.append(invalid("spec.clusterIP", cip, f"may not be set to 'None' for {stype} services"))
    seen_names: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        p = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(f"{p}.name"))
        elif name:
            errs += names.dns1123_label(name, f"{p}.name")
            if name in seen_names:
                errs.append(duplicate(f"{p}.name", name))
            seen_names.add(name)
        errs += port_errors(port.get("port"), f"{p}.port")
        errs += m.supported(f"{p}.protocol", port.get("protocol"), pods.PROTOCOLS)
        tp = port.get("targetPort")
        if isinstance(tp, str):
            errs += names.messages_to_errors(names.is_valid_port_name(tp), f"{p}.targetPort", tp)
        elif tp is not None:
            errs += port_errors(tp, f"{p}.targetPort")
        np_ = port.get("nodePort")
        if np_:
            errs += port_errors(np_, f"{p}.nodePort")
    if spec.get("selector") is not None:
        errs += m.validate_labels(spec["selector"], "spec.selector")
    affinity = spec.get("sessionAffinity")
    errs += m.supported("spec.sessionAffinity", affinity, ["ClientIP", "None"])
    if affinity == "ClientIP":
        timeout = d(spec, "sessionAffinityConfig", "clientIP", "timeoutSeconds")
        if timeout is not None and (not is_int(timeout) or not 0 < timeout <= 86400):
            errs.append(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                "must be greater than 0 and less than 86400"))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig",
                              "must not be set when session affinity is None"))
    if cip and not headless:
        try:
            ipaddress.ip_address(cip)
        except ValueError:
            errs.append(invalid("spec.clusterIP", cip, "must be empty, 'None', or a valid IP address"))
    for i, ip in enumerate(as_list(spec.get("externalIPs"))):
        errs += names.messages_to_errors(names.is_valid_ip(ip), f"spec.externalIPs[{i}]", ip)
    errs += m.supported("spec.type", stype, SERVICE_TYPES)
    if stype == "ClusterIP":
        for i, port in enumerate(ports):
            if as_dict(port).get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort",
                                      "may not be used when `type` is 'ClusterIP'"))
    seen_node: set[tuple[Any, Any]] = set()
    seen_port: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        if port.get("nodePort"):
            key = (port.get("protocol"), port.get("nodePort"))
            if key in seen_node:
                errs.append(duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
            seen_node.add(key)
        key = (port.get("protocol"), port.get("port"))
        if key in seen_port:
            errs.append(duplicate(f"spec.ports[{i}]", _service_port_repr(port)))
        seen_port.add(key)
    etp = spec.get("externalTrafficPolicy")
    if etp:
        if stype not in ("NodePort", "LoadBalancer"):
            errs.append(invalid("spec.externalTrafficPolicy", etp,
                                "may only be set for externally-accessible services"))
        elif etp not in ("Cluster", "Local"):
            errs.append(not_supported("spec.externalTrafficPolicy", etp, ["Cluster", "Local"]))
    elif stype in ("NodePort", "LoadBalancer"):
        errs.append(required("spec.externalTrafficPolicy"))
    itp = spec.get("internalTrafficPolicy")
    if itp is not None and itp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", itp, ["Cluster", "Local"]))
    if old is not None:
        errs = _meta_update(svc, old) + errs
        ospec = as_dict(old.get("spec"))
        old_cip = ospec.get("clusterIP") or ""
        if stype != "ExternalName" and ospec.get("type") != "ExternalName" and old_cip \
                and cip != old_cip:
            errs.append(invalid("spec.clusterIPs[0]", GoRepr(go_repr(spec.get("clusterIPs") or [cip])),
                                "may not change once set"))
    return errs


def validate_service_status(svc: Obj, old: Obj) -> Errs:
    errs = _meta_update(svc, old)
    for i, ing in enumerate(as_list(d(svc, "status", "loadBalancer", "ingress"))):
        ing = as_dict(ing)
        p = f"status.loadBalancer.ingress[{i}]"
        if ing.get("ip"):
            errs += names.messages_to_errors(names.is_valid_ip(ing["ip"]), f"{p}.ip", ing["ip"])
        if ing.get("hostname"):
            errs += names.dns1123_subdomain(ing["hostname"], f"{p}.hostname")
    return errs


# ReplicationController ------------------------------------------------------

def validate_replication_controller(rc: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(rc) if old is None else _meta_update(rc, old)
    spec = as_dict(rc.get("spec"))
    errs += non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = spec.get("selector")
    if not selector:
        errs.append(required("spec.selector"))
    else:
        errs += m.validate_labels(selector, "spec.selector")
    errs += non_negative(spec.get("replicas"), "spec.replicas")
    tmpl = spec.get("template")
    if tmpl is None:
        errs.append(required("spec.template"))
        return errs
    labels = d(tmpl, "metadata", "labels")
    if selector and not m.map_selector_matches(selector, labels):
        errs.append(invalid("spec.template.metadata.labels", as_dict(labels) or GoRepr("map[string]string(nil)"),
                            "selector does not match template labels"))
    errs += pods.validate_pod_template_spec(tmpl, "spec.template")
    policy = d(tmpl, "spec", "restartPolicy")
    if policy and policy != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", policy, ["Always"]))
    if d(tmpl, "spec", "activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicationController is not Supported"))
    return errs


def validate_replica_status(status: Any, path: str = "status") -> Errs:
    """Counters shared by RC, ReplicaSet, Deployment and StatefulSet status."""
    status = as_dict(status)
    errs: Errs = []
    for f in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas",
              "updatedReplicas", "currentReplicas", "unavailableReplicas", "observedGeneration",
              "terminatingReplicas", "collisionCount"):
        errs += non_negative(status.get(f), f"{path}.{f}")
    replicas = status.get("replicas")
    for f in ("fullyLabeledReplicas", "readyReplicas"):
        v = status.get(f)
        if is_int(v) and is_int(replicas) and v > replicas:
            errs.append(invalid(f"{path}.{f}", v, "cannot be greater than status.replicas"))
    ready, avail = status.get("readyReplicas"), status.get("availableReplicas")
    if is_int(avail) and is_int(ready) and avail > ready and "fullyLabeledReplicas" in status:
        errs.append(invalid(f"{path}.availableReplicas", avail, "cannot be greater than readyReplicas"))
    return errs


# Namespace, Node ------------------------------------------------------------

def validate_namespace(ns: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(ns, names.name_is_dns_label) if old is None else _meta_update(ns, old)
    for i, f in enumerate(as_list(d(ns, "spec", "finalizers"))):
        errs += _finalizer_name(f, f"spec.finalizers[{i}]")
    return errs


def _finalizer_name(f: Any, path: str) -> Errs:
    errs = names.messages_to_errors(names.is_qualified_name(str(f)), path, f)
    if not errs and "/" not in str(f) and f not in m.STANDARD_FINALIZERS:
        errs.append(invalid(path, f, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def validate_namespace_status(ns: Obj, old: Obj) -> Errs:
    errs = _meta_update(ns, old)
    phase = d(ns, "status", "phase")
    deleting = bool(d(ns, "metadata", "deletionTimestamp"))
    if deleting and phase != "Terminating":
        errs.append(not_supported("status.Phase", phase, ["Terminating"]))
    elif not deleting and phase != "Active":
        errs.append(not_supported("status.Phase", phase, ["Active"]))
    return errs


def validate_node(node: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(node) if old is None else _meta_update(node, old)
    spec = as_dict(node.get("spec"))
    for i, cidr in enumerate(as_list(spec.get("podCIDRs"))):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            errs.append(invalid(f"spec.podCIDRs[{i}]", cidr,
                                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    seen: set[tuple[Any, Any]] = set()
    for i, t in enumerate(as_list(spec.get("taints"))):
        t = as_dict(t)
        p = f"spec.taints[{i}]"
        errs += names.qualified_name(t.get("key") or "", f"{p}.key")
        if t.get("value"):
            errs += names.messages_to_errors(names.is_label_value(t["value"]), f"{p}.value", t["value"])
        errs += m.supported(f"{p}.effect", t.get("effect"), ["NoExecute", "NoSchedule", "PreferNoSchedule"])
        key = (t.get("key"), t.get("effect"))
        if key in seen:
            errs.append(duplicate(p, "taints must be unique by key and effect pair"))
        seen.add(key)
    if old is not None:
        ospec = as_dict(old.get("spec"))
        for f in ("podCIDR", "providerID"):
            if ospec.get(f) and spec.get(f) != ospec.get(f):
                errs.append(forbidden(f"spec.{f}", f"node updates may not change {f} except from \"\" to valid"))
    return errs


def validate_node_status(node: Obj, old: Obj) -> Errs:
    errs = _meta_update(node, old)
    status = as_dict(node.get("status"))
    for key in ("capacity", "allocatable"):
        for name, q in as_dict(status.get(key)).items():
            try:
                quantity.parse_quantity(q)
            except quantity.QuantityError as e:
                errs.append(invalid(f"status.{key}[{name}]", q, str(e)))
    return errs


# ConfigMap, Secret, ServiceAccount -------------------------------------------

def _data_keys(obj: Obj, field: str, errs: Errs) -> int:
    size = 0
    for key, val in as_dict(obj.get(field)).items():
        errs += names.messages_to_errors(names.is_config_map_key(key), f"{field}[{key}]", key)
        size += len(val) if isinstance(val, str) else 0
    return size


def validate_config_map(cm: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(cm) if old is None else _meta_update(cm, old)
    size = _data_keys(cm, "data", errs)
    for key, val in as_dict(cm.get("binaryData")).items():
        errs += names.messages_to_errors(names.is_config_map_key(key), f"binaryData[{key}]", key)
        if key in as_dict(cm.get("data")):
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        size += _b64len(val)
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    if old is not None:
        errs += _immutable_data(cm, old, ("data", "binaryData"))
    return errs


def _b64len(val: Any) -> int:
    try:
        return len(base64.b64decode(val, validate=True))
    except Exception:  # noqa: BLE001 - size check only; decoding errors belong to the decoder
        return len(val) if isinstance(val, str) else 0


def _immutable_data(new: Obj, old: Obj, fields: tuple[str, ...]) -> Errs:
    if old.get("immutable") is not True:
        return []
    errs: Errs = []
    if new.get("immutable") is not True:
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for f in fields:
        if (new.get(f) or {}) != (old.get(f) or {}):
            errs.append(forbidden(f, "field is immutable when `immutable` is set"))
    return errs


_SECRET_REQUIRED = {
    "kubernetes.io/dockercfg": [".dockercfg"],
    "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
    "kubernetes.io/ssh-auth": ["ssh-privatekey"],
    "kubernetes.io/tls": ["tls.crt", "tls.key"],
}


def validate_secret(secret: Obj, old: Obj | None = None) -> Errs:
    """A Secret as stored: ``stringData`` is already merged into ``data``
    (conversion.to_internal), so its keys are checked as ``data[key]``."""
    errs = _meta(secret) if old is None else _meta_update(secret, old)
    size = 0
    data = as_dict(secret.get("data"))
    for key, val in data.items():
        errs += names.messages_to_errors(names.is_config_map_key(key), f"data[{key}]", key)
        size += _b64len(val)
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    stype = secret.get("type") or "Opaque"
    for key in _SECRET_REQUIRED.get(stype, []):
        if key not in data:
            errs.append(required(f"data[{key}]"))
    if stype == "kubernetes.io/service-account-token" and \
            not d(secret, "metadata", "annotations", "kubernetes.io/service-account.name"):
        errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if stype == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        errs.append(required("data[username]"))
        errs.append(required("data[password]"))
    if old is not None:
        errs += immutable(secret.get("type") or "Opaque", old.get("type") or "Opaque", "type")
        errs += _immutable_data(secret, old, ("data",))
    return errs


def validate_service_account(sa: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(sa) if old is None else _meta_update(sa, old)
    for i, ref in enumerate(as_list(sa.get("secrets"))):
        name = as_dict(ref).get("name")
        if name:
            errs += names.dns1123_subdomain(name, f"secrets[{i}].name")
    return errs


# Endpoints, LimitRange, ResourceQuota ----------------------------------------

def validate_endpoints(ep: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(ep) if old is None else _meta_update(ep, old)
    for i, sub in enumerate(as_list(ep.get("subsets"))):
        sub = as_dict(sub)
        p = f"subsets[{i}]"
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(as_list(sub.get(key))):
                ip = as_dict(addr).get("ip") or ""
                errs += names.messages_to_errors(names.is_valid_ip(ip), f"{p}.{key}[{j}].ip", ip)
        ports = as_list(sub.get("ports"))
        for j, port in enumerate(ports):
            port = as_dict(port)
            pp = f"{p}.ports[{j}]"
            if len(ports) > 1 and not port.get("name"):
                errs.append(required(f"{pp}.name"))
            elif port.get("name"):
                errs += names.dns1123_label(port["name"], f"{pp}.name")
            errs += port_errors(port.get("port"), f"{pp}.port")
            errs += m.supported(f"{pp}.protocol", port.get("protocol"), pods.PROTOCOLS)
    return errs


def _quantities(res: Any, path: str) -> Errs:
    errs: Errs = []
    for name, q in as_dict(res).items():
        errs += names.messages_to_errors(names.is_qualified_name(name), f"{path}[{name}]", name)
        try:
            if quantity.parse_quantity(q) < 0:
                errs.append(invalid(f"{path}[{name}]", quantity.canonical(q),
                                    "must be greater than or equal to 0"))
        except quantity.QuantityError as e:
            errs.append(invalid(f"{path}[{name}]", q, str(e)))
    return errs


def validate_limit_range(lr: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(lr) if old is None else _meta_update(lr, old)
    seen: set[Any] = set()
    for i, item in enumerate(as_list(d(lr, "spec", "limits"))):
        item = as_dict(item)
        p = f"spec.limits[{i}]"
        ltype = item.get("type")
        if ltype in seen:
            errs.append(duplicate(f"{p}.type", ltype))
        seen.add(ltype)
        if not ltype:
            errs.append(required(f"{p}.type"))
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            errs += _quantities(item.get(key), f"{p}.{key}")
        if ltype == "Pod":
            for key in ("default", "defaultRequest"):
                if item.get(key):
                    errs.append(forbidden(f"{p}.{key}", "may not be specified when `type` is 'Pod'"))
        mins, maxs = as_dict(item.get("min")), as_dict(item.get("max"))
        for name, lo in mins.items():
            if name in maxs and _lt(maxs[name], lo):
                errs.append(invalid(f"{p}.min[{name}]", quantity.canonical(lo),
                                    f"min value {quantity.canonical(lo)} is greater than max value "
                                    f"{quantity.canonical(maxs[name])}"))
    return errs


def _lt(a: Any, b: Any) -> bool:
    try:
        return quantity.compare(a, b) < 0
    except quantity.QuantityError:
        return False


RESOURCE_QUOTA_SCOPES = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort",
                         "NotTerminating", "PriorityClass", "Terminating", "VolumeAttributesClass"]


def validate_resource_quota(rq: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(rq) if old is None else _meta_update(rq, old)
    spec = as_dict(rq.get("spec"))
    errs += _quantities(spec.get("hard"), "spec.hard")
    for i, scope in enumerate(as_list(spec.get("scopes"))):
        if scope not in RESOURCE_QUOTA_SCOPES:
            errs.append(not_supported(f"spec.scopes[{i}]", scope, RESOURCE_QUOTA_SCOPES))
    return errs


def validate_resource_quota_status(rq: Obj, old: Obj) -> Errs:
    errs = _meta_update(rq, old)
    errs += _quantities(d(rq, "status", "hard"), "status.hard")
    errs += _quantities(d(rq, "status", "used"), "status.used")
    return errs


# PersistentVolume(Claim) -----------------------------------------------------

def _access_modes(modes: Any, path: str) -> Errs:
    modes = as_list(modes)
    if not modes:
        return [required(path, "at least 1 access mode is required")]
    errs: Errs = []
    for mode in modes:
        if mode not in ACCESS_MODES:
            errs.append(not_supported(path, mode, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def validate_persistent_volume(pv: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(pv) if old is None else _meta_update(pv, old)
    spec = as_dict(pv.get("spec"))
    errs += _access_modes(spec.get("accessModes"), "spec.accessModes")
    cap = as_dict(spec.get("capacity"))
    if not cap:
        errs.append(required("spec.capacity"))
    elif "storage" not in cap or len(cap) > 1:
        errs.append(not_supported("spec.capacity", GoRepr("core.ResourceList{...}"), ["storage"]))
    errs += _quantities(cap, "spec.capacity")
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy,
                                  ["Delete", "Recycle", "Retain"]))
    sources = [s for s in pods.VOLUME_SOURCES + ("local",) if spec.get(s) is not None
               and s not in ("emptyDir", "secret", "configMap", "downwardAPI", "projected",
                             "gitRepo", "persistentVolumeClaim", "ephemeral", "image")]
    if not sources:
        errs.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errs.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    mode = spec.get("volumeMode")
    if mode and mode not in ("Block", "Filesystem"):
        errs.append(not_supported("spec.volumeMode", mode, ["Block", "Filesystem"]))
    return errs


def validate_persistent_volume_claim(pvc: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(pvc) if old is None else _meta_update(pvc, old)
    spec = as_dict(pvc.get("spec"))
    errs += _access_modes(spec.get("accessModes"), "spec.accessModes")
    requests = as_dict(d(spec, "resources", "requests"))
    if "storage" not in requests:
        errs.append(required("spec.resources[storage]"))
    else:
        q = requests["storage"]
        try:
            if quantity.parse_quantity(q) <= 0:
                errs.append(invalid("spec.resources[storage]", quantity.canonical(q),
                                    "must be greater than zero"))
        except quantity.QuantityError as e:
            errs.append(invalid("spec.resources[storage]", q, str(e)))
    mode = spec.get("volumeMode")
    if mode and mode not in ("Block", "Filesystem"):
        errs.append(not_supported("spec.volumeMode", mode, ["Block", "Filesystem"]))
    if spec.get("selector") is not None:
        errs += m.validate_label_selector(spec["selector"], "spec.selector")
    if old is not None:
        ospec = dict(as_dict(old.get("spec")))
        nspec = dict(spec)
        for s in (ospec, nspec):
            s.pop("resources", None)
            s.pop("volumeAttributesClassName", None)
        if not ospec.get("volumeName"):
            # Binding fills in volumeName once.
            ospec.pop("volumeName", None)
            nspec.pop("volumeName", None)
        if ospec != nspec:
            errs.append(forbidden("spec", "spec is immutable after creation except "
                                  "resources.requests and volumeAttributesClassName for bound claims"))
    return errs


# Event, PodTemplate ---------------------------------------------------------

def validate_event(ev: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(ev) if old is None else _meta_update(ev, old)
    involved = as_dict(ev.get("involvedObject"))
    ns = d(ev, "metadata", "namespace") or ""
    ins = involved.get("namespace") or ""
    if ins and ns and ins != ns:
        errs.append(invalid("involvedObject.namespace", ins, "does not match event.namespace"))
    for f in ("count",):
        errs += non_negative(ev.get(f), f)
    etype = ev.get("type")
    if etype and etype not in ("Normal", "Warning"):
        errs.append(not_supported("type", etype, ["Normal", "Warning"]))
    if len(ev.get("reason") or "") > 128:
        errs.append(too_long("reason", 128))
    if len(ev.get("action") or "") > 128:
        errs.append(too_long("action", 128))
    return errs


def validate_pod_template(pt: Obj, old: Obj | None = None) -> Errs:
    errs = _meta(pt) if old is None else _meta_update(pt, old)
    errs += pods.validate_pod_template_spec(pt.get("template"), "template")
    return errs


def validate_pv_status(pv: Obj, old: Obj) -> Errs:
    errs = _meta_update(pv, old)
    phase = d(pv, "status", "phase")
    phases = ["Available", "Bound", "Failed", "Pending", "Released"]
    if phase and phase not in phases:
        errs.append(not_supported("status.phase", phase, phases))
    return errs


def validate_pvc_status(pvc: Obj, old: Obj) -> Errs:
    errs = _meta_update(pvc, old)
    errs += _quantities(d(pvc, "status", "capacity"), "status.capacity")
    return errs


def validate_binding(b: Obj) -> Errs:
    errs: Errs = []
    target = as_dict(b.get("target"))
    if target.get("kind") not in (None, "", "Node"):
        errs.append(not_supported("target.kind", target.get("kind"), ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(required("target.name"))
    return errs

