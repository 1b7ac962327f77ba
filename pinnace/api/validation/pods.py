"""PodSpec and PodTemplateSpec validation (pkg/apis/core/validation),
shared by pods and every workload's template."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pinnace.api import quantity

from . import meta as m
from . import names
from ._common import (
    Errs,
    Obj,
    as_dict,
    as_list,
    duplicate,
    forbidden,
    invalid,
    is_int,
    non_negative,
    not_found,
    not_supported,
    port_errors,
    required,
)

PROTOCOLS = ["SCTP", "TCP", "UDP"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
MAX_INT32 = 2147483647
# Sources a Volume may name; exactly one must be set.
VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image",
)
STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
POD_UPDATABLE = ("`spec.containers[*].image`,`spec.initContainers[*].image`,"
                 "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                 "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if "
                 "it was previously negative)")


def _validate_volumes(volumes: list[Any], path: str) -> tuple[Errs, set[str]]:
    errs: Errs = []
    found: set[str] = set()
    for i, vol in enumerate(volumes):
        vol = as_dict(vol)
        p = f"{path}[{i}]"
        name = vol.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += names.dns1123_label(name, f"{p}.name")
            if name in found:
                errs.append(duplicate(f"{p}.name", name))
            found.add(name)
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            errs.append(required(p, "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type"))
        pvc = vol.get("persistentVolumeClaim")
        if isinstance(pvc, dict) and not pvc.get("claimName"):
            errs.append(required(f"{p}.persistentVolumeClaim.claimName"))
        for src in ("configMap", "secret"):
            s = vol.get(src)
            if isinstance(s, dict):
                mode = s.get("defaultMode")
                if is_int(mode) and not 0 <= mode <= 0o777:
                    errs.append(invalid(f"{p}.{src}.defaultMode", mode,
                                        "must be a number between 0 and 0777 (octal), both inclusive"))
    return errs, found


def _validate_ports(ports: list[Any], path: str) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        p = f"{path}[{i}]"
        name = port.get("name")
        if name:
            errs += names.messages_to_errors(names.is_valid_port_name(name), f"{p}.name", name)
            if name in seen:
                errs.append(duplicate(f"{p}.name", name))
            seen.add(name)
        cp = port.get("containerPort")
        if not cp:
            errs.append(required(f"{p}.containerPort"))
        else:
            errs += port_errors(cp, f"{p}.containerPort")
        hp = port.get("hostPort")
        if hp:
            errs += port_errors(hp, f"{p}.hostPort")
        errs += m.supported(f"{p}.protocol", port.get("protocol"), PROTOCOLS)
    return errs


def _validate_env(env: list[Any], path: str) -> Errs:
    errs: Errs = []
    for i, ev in enumerate(env):
        ev = as_dict(ev)
        p = f"{path}[{i}]"
        name = ev.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += names.messages_to_errors(names.is_env_var_name(name), f"{p}.name", name)
        vf = ev.get("valueFrom")
        if vf is not None:
            if ev.get("value"):
                errs.append(invalid(f"{p}.valueFrom", "",
                                    "may not be specified when `value` is not empty"))
            kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef",
                                 "secretKeyRef", "fileKeyRef") if as_dict(vf).get(k) is not None]
            if not kinds:
                errs.append(invalid(f"{p}.valueFrom", "",
                                    "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                    "`configMapKeyRef` or `secretKeyRef`"))
            elif len(kinds) > 1:
                errs.append(invalid(f"{p}.valueFrom", "",
                                    "may not have more than one field specified at a time"))
            for ref in ("configMapKeyRef", "secretKeyRef"):
                r = as_dict(vf).get(ref)
                if isinstance(r, dict):
                    key = r.get("key") or ""
                    if not key:
                        errs.append(required(f"{p}.valueFrom.{ref}.key"))
                    else:
                        errs += names.messages_to_errors(names.is_config_map_key(key),
                                                         f"{p}.valueFrom.{ref}.key", key)
    return errs


def _validate_mounts(mounts: list[Any], volumes: set[str], path: str) -> Errs:
    errs: Errs = []
    paths: set[str] = set()
    for i, mnt in enumerate(mounts):
        mnt = as_dict(mnt)
        p = f"{path}[{i}]"
        name = mnt.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        elif name not in volumes:
            errs.append(not_found(f"{p}.name", name))
        mp = mnt.get("mountPath") or ""
        if not mp:
            errs.append(required(f"{p}.mountPath"))
        elif mp in paths:
            errs.append(invalid(f"{p}.mountPath", mp, "must be unique"))
        paths.add(mp)
        sub = mnt.get("subPath") or ""
        if sub and (sub.startswith("/") or ".." in sub.split("/")):
            errs.append(invalid(f"{p}.subPath", sub,
                                "must be a relative path" if sub.startswith("/")
                                else "must not contain '..'"))
    return errs


def _quantity_errors(name: str, q: Any, path: str) -> Errs:
    try:
        v = quantity.parse_quantity(q)
    except quantity.QuantityError as e:
        return [invalid(path, q, str(e))]
    if v < 0:
        return [invalid(path, quantity.canonical(q), "must be greater than or equal to 0")]
    if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-") \
            and v.denominator != 1:
        return [invalid(path, quantity.canonical(q), "must be an integer")]
    return []


def _resource_name_errors(name: str, path: str) -> Errs:
    errs = names.messages_to_errors(names.is_qualified_name(name), path, name)
    if not errs and "/" not in name and name not in STANDARD_CONTAINER_RESOURCES \
            and not name.startswith("hugepages-"):
        errs.append(invalid(path, name, "must be a standard resource for containers"))
    return errs


def validate_resources(res: Any, path: str) -> Errs:
    res = as_dict(res)
    errs: Errs = []
    limits, requests = as_dict(res.get("limits")), as_dict(res.get("requests"))
    for name, q in limits.items():
        errs += _resource_name_errors(name, f"{path}.limits[{name}]")
        errs += _quantity_errors(name, q, f"{path}.limits[{name}]")
    for name, q in requests.items():
        errs += _resource_name_errors(name, f"{path}.requests[{name}]")
        errs += _quantity_errors(name, q, f"{path}.requests[{name}]")
        if name in limits:
            try:
                over = quantity.compare(q, limits[name]) > 0
            except quantity.QuantityError:
                continue
            if over:
                errs.append(invalid(f"{path}.requests", quantity.canonical(q),
                                    f"must be less than or equal to {name} limit of "
                                    f"{quantity.canonical(limits[name])}"))
    return errs


def _validate_handler(h: Any, path: str) -> Errs:
    h = as_dict(h)
    kinds = [k for k in ("exec", "httpGet", "tcpSocket", "grpc", "sleep") if h.get(k) is not None]
    if not kinds:
        return [required(path, "must specify a handler type")]
    if len(kinds) > 1:
        return [forbidden(f"{path}.{kinds[1]}", "may not specify more than 1 handler type")]
    errs: Errs = []
    for k in ("httpGet", "tcpSocket"):
        port = as_dict(h.get(k)).get("port")
        if k in kinds:
            if isinstance(port, str):
                errs += names.messages_to_errors(names.is_valid_port_name(port),
                                                 f"{path}.{k}.port", port)
            else:
                errs += port_errors(port, f"{path}.{k}.port")
    return errs


def _validate_probe(probe: Any, path: str, must_be_one: bool) -> Errs:
    if probe is None:
        return []
    probe = as_dict(probe)
    errs = _validate_handler(probe, path)
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
              "failureThreshold", "terminationGracePeriodSeconds"):
        errs += non_negative(probe.get(f), f"{path}.{f}")
    if must_be_one and probe.get("successThreshold") not in (None, 1):
        errs.append(invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1"))
    return errs


def _validate_security_context(sc: Any, path: str) -> Errs:
    sc = as_dict(sc)
    errs: Errs = []
    for f in ("runAsUser", "runAsGroup"):
        v = sc.get(f)
        if is_int(v) and not 0 <= v <= MAX_INT32:
            errs.append(invalid(f"{path}.{f}", v, f"must be between 0 and {MAX_INT32}, inclusive"))
    if sc.get("privileged") is True and sc.get("allowPrivilegeEscalation") is False:
        errs.append(invalid(path, "",
                            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
    return errs


def _validate_container(c: Obj, p: str, volumes: set[str], init: bool) -> Errs:
    errs: Errs = []
    image = c.get("image") or ""
    if not image:
        errs.append(required(f"{p}.image"))
    elif image != image.strip():
        errs.append(invalid(f"{p}.image", image, "must not have leading or trailing whitespace"))
    sidecar = init and c.get("restartPolicy") == "Always"
    if init and not sidecar:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if c.get(probe) is not None:
                errs.append(forbidden(f"{p}.{probe}",
                                      "may not be set for init containers without restartPolicy=Always"))
    else:
        errs += _validate_probe(c.get("livenessProbe"), f"{p}.livenessProbe", True)
        errs += _validate_probe(c.get("readinessProbe"), f"{p}.readinessProbe", False)
        errs += _validate_probe(c.get("startupProbe"), f"{p}.startupProbe", True)
    if c.get("restartPolicy") is not None:
        if not init:
            errs.append(forbidden(f"{p}.restartPolicy",
                                  "may not be set for non-init containers"))
        elif c["restartPolicy"] != "Always":
            errs.append(not_supported(f"{p}.restartPolicy", c["restartPolicy"], ["Always"]))
    lifecycle = as_dict(c.get("lifecycle"))
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            errs += _validate_handler(lifecycle[hook], f"{p}.lifecycle.{hook}")
    errs += _validate_ports(as_list(c.get("ports")), f"{p}.ports")
    errs += _validate_env(as_list(c.get("env")), f"{p}.env")
    errs += _validate_mounts(as_list(c.get("volumeMounts")), volumes, f"{p}.volumeMounts")
    errs += validate_resources(c.get("resources"), f"{p}.resources")
    errs += _validate_security_context(c.get("securityContext"), f"{p}.securityContext")
    errs += m.supported(f"{p}.terminationMessagePolicy", c.get("terminationMessagePolicy"),
                        TERMINATION_MESSAGE_POLICIES)
    errs += m.supported(f"{p}.imagePullPolicy", c.get("imagePullPolicy"), PULL_POLICIES)
    return errs


def _validate_containers(containers: list[Any], path: str, volumes: set[str],
                         all_names: set[str], init: bool) -> Errs:
    errs: Errs = []
    for i, c in enumerate(containers):
        c = as_dict(c)
        p = f"{path}[{i}]"
        name = c.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += names.dns1123_label(name, f"{p}.name")
        errs += _validate_container(c, p, volumes, init)
        if name in all_names:
            errs.append(duplicate(f"{p}.name", name))
        all_names.add(name)
    return errs


def _validate_tolerations(tols: list[Any], path: str) -> Errs:
    errs: Errs = []
    for i, t in enumerate(tols):
        t = as_dict(t)
        p = f"{path}[{i}]"
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if key:
            errs += names.qualified_name(key, f"{p}.key")
        elif op != "Exists":
            errs.append(invalid(f"{p}.operator", op,
                                'operator must be Exists when `key` is empty, which means '
                                '"match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            errs.append(invalid(f"{p}.effect", t.get("effect", ""),
                                "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op == "Equal":
            errs += names.messages_to_errors(names.is_label_value(t.get("value") or ""),
                                             f"{p}.value", t.get("value") or "")
        elif op == "Exists":
            if t.get("value"):
                errs.append(invalid(f"{p}.operator", t["value"],
                                    "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{p}.operator", op, ["Equal", "Exists"]))
        eff = t.get("effect")
        if eff and eff not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(not_supported(f"{p}.effect", eff,
                                      ["NoExecute", "NoSchedule", "PreferNoSchedule"]))
    return errs


def validate_pod_spec(spec: Any, path: str, claim_templates: Iterable[str] = ()) -> Errs:
    """``claim_templates``: names a StatefulSet's volumeClaimTemplates give
    its pods as volumes, so containers may mount them."""
    spec = as_dict(spec)
    errs, volumes = _validate_volumes(as_list(spec.get("volumes")), f"{path}.volumes")
    volumes.update(n for n in claim_templates if isinstance(n, str) and n)
    all_names: set[str] = set()
    containers = as_list(spec.get("containers"))
    if not containers:
        errs.append(required(f"{path}.containers"))
    errs += _validate_containers(containers, f"{path}.containers", volumes, all_names, False)
    errs += _validate_containers(as_list(spec.get("initContainers")), f"{path}.initContainers",
                                 volumes, all_names, True)
    errs += _validate_containers(as_list(spec.get("ephemeralContainers")),
                                 f"{path}.ephemeralContainers", volumes, all_names, False)
    errs += m.supported(f"{path}.restartPolicy", spec.get("restartPolicy"), RESTART_POLICIES)
    errs += m.supported(f"{path}.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    errs += m.validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    errs += _validate_security_context(spec.get("securityContext"), f"{path}.securityContext")
    for f in ("serviceAccountName", "nodeName"):
        if spec.get(f):
            errs += names.dns1123_subdomain(spec[f], f"{path}.{f}")
    for f in ("hostname", "subdomain"):
        if spec.get(f):
            errs += names.dns1123_label(spec[f], f"{path}.{f}")
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not is_int(ads) or not 1 <= ads <= MAX_INT32):
        errs.append(invalid(f"{path}.activeDeadlineSeconds", ads,
                            f"must be between 1 and {MAX_INT32}, inclusive"))
    errs += _validate_tolerations(as_list(spec.get("tolerations")), f"{path}.tolerations")
    if spec.get("dnsPolicy") == "None" and not spec.get("dnsConfig"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    if spec.get("resources") is not None:
        errs += validate_resources(spec["resources"], f"{path}.resources")
    errs += _validate_scheduling_gates(as_list(spec.get("schedulingGates")),
                                       f"{path}.schedulingGates")
    return errs


def _validate_scheduling_gates(gates: list[Any], path: str) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    for i, gate in enumerate(gates):
        name = as_dict(gate).get("name") or ""
        # Upstream reports a gate's problems at the list index, not at .name.
        errs += names.qualified_name(name, f"{path}[{i}]")
        if name in seen:
            errs.append(duplicate(f"{path}[{i}]", name))
        seen.add(name)
    return errs


def validate_pod_template_spec(tmpl: Any, path: str, claim_templates: Iterable[str] = ()) -> Errs:
    """ValidatePodTemplateSpec; note upstream names labels ``<path>.labels``."""
    tmpl = as_dict(tmpl)
    md = as_dict(tmpl.get("metadata"))
    errs = m.validate_labels(md.get("labels"), f"{path}.labels")
    errs += m.validate_annotations(md.get("annotations"), f"{path}.annotations")
    errs += validate_pod_spec(tmpl.get("spec"), f"{path}.spec", claim_templates)
    if as_list(as_dict(tmpl.get("spec")).get("ephemeralContainers")):
        errs.append(forbidden(f"{path}.spec.ephemeralContainers",
                              "ephemeral containers not allowed in pod template"))
    return errs


def validate_pod(pod: Obj) -> Errs:
    errs = m.validate_object_meta(pod.get("metadata"), names.name_is_dns_subdomain)
    spec = as_dict(pod.get("spec"))
    errs += validate_pod_spec(spec, "spec")
    if spec.get("nodeName") and as_list(spec.get("schedulingGates")):
        # A pod bound at birth would skip the gates meant to hold it back.
        errs.append(forbidden("spec.nodeName",
                              "cannot be set until all schedulingGates have been cleared"))
    return errs


# Updates ---------------------------------------------------------------------

def _go_diff(old: Obj, new: Obj) -> str:
    lines = ["  core.PodSpec{"]
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            field = k[:1].upper() + k[1:]
            lines.append(f"- \t{field}: {old.get(k)!r},")
            lines.append(f"+ \t{field}: {new.get(k)!r},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


_NOT_FOR_EPHEMERAL = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
                      "resources", "resizePolicy", "restartPolicy")


def validate_ephemeral_containers_update(new: Obj, old: Obj) -> Errs:
    """pods/ephemeralcontainers (upstream's ValidatePodEphemeralContainersUpdate):
    containers may be added, never changed or removed; each is a container
    without ports, probes, lifecycle or resources, named apart from every
    other container, and its targetContainerName names one of the pod's."""
    errs = m.validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    errs += validate_pod_spec(spec, "spec")
    path = "spec.ephemeralContainers"
    regular = {as_dict(c).get("name") for key in ("containers", "initContainers")
               for c in as_list(spec.get(key))}
    for i, c in enumerate(as_list(spec.get("ephemeralContainers"))):
        c, p = as_dict(c), f"{path}[{i}]"
        for key in _NOT_FOR_EPHEMERAL:
            if c.get(key):
                errs.append(forbidden(f"{p}.{key}", "cannot be set for an Ephemeral Container"))
        target = c.get("targetContainerName")
        if target and target not in regular:
            errs.append(not_found(f"{p}.targetContainerName", target))
    new_by_name = {as_dict(c).get("name"): c for c in as_list(spec.get("ephemeralContainers"))}
    for c in as_list(old_spec.get("ephemeralContainers")):
        name = as_dict(c).get("name")
        if name not in new_by_name:
            errs.append(forbidden(path, f'existing ephemeral containers "{name}" may not be '
                                        "removed"))
        elif new_by_name[name] != c:
            i = list(new_by_name).index(name)
            errs.append(forbidden(f"{path}[{i}]", f'existing ephemeral containers "{name}" may '
                                                 "not be changed"))
    return errs


def qos_class(spec: Obj) -> str:
    """The pod's QoS class from its containers' requests and limits."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests_any = limits_all = False
    guaranteed = bool(containers)
    for c in containers:
        if not isinstance(c, dict):
            continue
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
        limits_all = limits_all or bool(lim)
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"


def _without_cpu_memory(resources: Any) -> Obj:
    res = as_dict(resources)
    return {k: {r: q for r, q in as_dict(v).items() if r not in ("cpu", "memory")}
            for k, v in res.items() if k in ("requests", "limits")}


def validate_pod_resize(new: Obj, old: Obj) -> Errs:
    """pods/resize (upstream's ValidatePodResize): only the cpu and memory of
    running containers (and sidecars) change, and the QoS class stays."""
    errs = m.validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    if "kubernetes.io/config.mirror" in (as_dict(old.get("metadata")).get("annotations") or {}):
        return [forbidden("", "static pods cannot be resized")]
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    errs += validate_pod_spec(spec, "spec")
    if qos_class(spec) != qos_class(old_spec):
        errs.append(invalid("spec", qos_class(spec),
                            "Pod QOS Class may not change as a result of resizing"))
    for key in ("containers", "initContainers"):
        olds = {as_dict(c).get("name"): as_dict(c) for c in as_list(old_spec.get(key))}
        for i, c in enumerate(as_list(spec.get(key))):
            c, before = as_dict(c), olds.get(as_dict(c).get("name"), {})
            if c.get("resources") == before.get("resources"):
                continue
            p = f"spec.{key}[{i}].resources"
            if key == "initContainers" and c.get("restartPolicy") != "Always":
                errs.append(forbidden(p, "resources for non-sidecar init containers are "
                                         "immutable"))
            elif _without_cpu_memory(c.get("resources")) != \
                    _without_cpu_memory(before.get("resources")):
                errs.append(forbidden(p, "only cpu and memory resources are mutable"))
    return errs


def validate_pod_update(new: Obj, old: Obj) -> Errs:
    errs = m.validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    ns, os_ = as_dict(new.get("spec")), as_dict(old.get("spec"))
    for key in ("containers", "initContainers"):
        nc, oc = as_list(ns.get(key)), as_list(os_.get(key))
        if len(nc) != len(oc):
            errs.append(forbidden(f"spec.{key}", "pod updates may not add or remove containers"))
            return errs
        for i, c in enumerate(nc):
            if not as_dict(c).get("image"):
                errs.append(required(f"spec.{key}[{i}].image"))
    old_ads, new_ads = os_.get("activeDeadlineSeconds"), ns.get("activeDeadlineSeconds")
    if old_ads is not None:
        if new_ads is None:
            errs.append(invalid("spec.activeDeadlineSeconds", None,
                                "must not update from a positive integer to nil value"))
        elif is_int(new_ads) and new_ads > old_ads:
            errs.append(invalid("spec.activeDeadlineSeconds", new_ads,
                                "must be less than or equal to previous value"))
    # Copy what may change into the old spec; anything still different is forbidden.
    munged = copy.deepcopy(os_)
    for key in ("containers", "initContainers"):
        for i, c in enumerate(as_list(munged.get(key))):
            c["image"] = as_list(ns.get(key))[i].get("image")
    for key in ("activeDeadlineSeconds",):
        if key in ns:
            munged[key] = ns[key]
        else:
            munged.pop(key, None)
    old_tols, new_tols = as_list(os_.get("tolerations")), as_list(ns.get("tolerations"))
    for t in old_tols:
        if t not in new_tols and not any(_same_toleration(t, n) for n in new_tols):
            errs.append(forbidden("spec.tolerations",
                                  "existing toleration can not be modified except its tolerationSeconds"))
            break
    if "tolerations" in ns:
        munged["tolerations"] = ns["tolerations"]
    else:
        munged.pop("tolerations", None)
    ogp, ngp = os_.get("terminationGracePeriodSeconds"), ns.get("terminationGracePeriodSeconds")
    if is_int(ogp) and ogp < 0 and ngp == 1:
        munged["terminationGracePeriodSeconds"] = 1
    old_gates = as_list(os_.get("schedulingGates"))
    new_gates = as_list(ns.get("schedulingGates"))
    errs += _only_deleted_gates(new_gates, old_gates)
    # Gates are checked above, not by the comparison of the rest of the spec.
    if "schedulingGates" in ns:
        munged["schedulingGates"] = ns["schedulingGates"]
    else:
        munged.pop("schedulingGates", None)
    if old_gates:
        for key in ("nodeSelector", "affinity"):
            if key in ns:
                munged[key] = ns[key]
    if munged != ns:
        errs.append(forbidden("spec", "pod updates may not change fields other than "
                              + POD_UPDATABLE + "\n" + _go_diff(munged, ns)))
    return errs


def _only_deleted_gates(new: list[Any], old: list[Any]) -> Errs:
    """One error per gate ``old`` lacks: a gate may be removed, never added."""
    before = {as_dict(g).get("name") for g in old}
    added: dict[str, int] = {}
    for i, g in enumerate(new):
        name = as_dict(g).get("name") or ""
        if name not in before:
            added[name] = i  # a repeated name is reported at its last place, as upstream
    return [forbidden(f"spec.schedulingGates[{i}].name",
                      f"only deletion is allowed, but found new scheduling gate '{name}'")
            for name, i in sorted(added.items(), key=lambda kv: kv[1])]


def _same_toleration(a: Any, b: Any) -> bool:
    a, b = dict(as_dict(a)), dict(as_dict(b))
    a.pop("tolerationSeconds", None)
    b.pop("tolerationSeconds", None)
    return a == b


def validate_pod_status_update(new: Obj, old: Obj) -> Errs:
    errs = m.validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    ns, os_ = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if os_.get("nodeName") and ns.get("nodeName") != os_.get("nodeName"):
        errs.append(forbidden("spec.nodeName", "may not be changed directly"))
    status = as_dict(new.get("status"))
    phase = status.get("phase")
    if phase and phase not in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
        errs.append(not_supported("status.phase", phase,
                                  ["Failed", "Pending", "Running", "Succeeded", "Unknown"]))
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for i, cs in enumerate(as_list(status.get(key))):
            errs += non_negative(as_dict(cs).get("restartCount"), f"status.{key}[{i}].restartCount")
    return errs
