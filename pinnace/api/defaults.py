"""Defaulting as the kube-apiserver's SetDefaults_* functions do it (v1.37),
applied in place before validation.

Not done here, because upstream does them elsewhere:
- ``priority``, ``preemptionPolicy``, ``serviceAccountName``, default
  tolerations and the service-account token volume: admission plugins.
- Service ``clusterIP(s)``, ``ipFamilies`` and ``ipFamilyPolicy``: the
  service IP allocator in the registry (``SingleStack``/``IPv4`` there).
- A Job's generated selector and pod labels: the Job strategy, with
  ``job_selector_labels`` / ``job_template_labels`` below.
- Namespace ``spec.finalizers: [kubernetes]``: the namespace strategy on
  create; offered here as ``namespace_finalizers``.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import quantity

Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"
_HPA_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                 "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                              {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_HPA_SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                   "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _sub(obj: Obj, key: str) -> Obj:
    """obj[key] as a dict, created when absent or null."""
    v = obj.get(key)
    if not isinstance(v, dict):
        v = {}
        obj[key] = v
    return v


def _dicts(v: Any) -> list[Obj]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _resource_list(rl: Any) -> None:
    """SetDefaults_ResourceList: round up to milli units, re-encoded canonically."""
    if not isinstance(rl, dict):
        return
    for k, q in list(rl.items()):
        try:
            rl[k] = quantity.canonical(q, milli=True)
        except quantity.QuantityError:
            pass  # left for validation to report


# Pod ---------------------------------------------------------------------------

def image_pull_policy(image: str) -> str:
    """Always for ``:latest`` or an untagged, undigested image; else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _http_get(h: Any) -> None:
    if isinstance(h, dict) and isinstance(h.get("httpGet"), dict):
        g = h["httpGet"]
        g.setdefault("path", "/")
        g.setdefault("scheme", "HTTP")


def _probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    for key, val in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                     ("failureThreshold", 3)):
        if not p.get(key):
            p[key] = val
    _http_get(p)


def _field_ref(ref: Any) -> None:
    if isinstance(ref, dict) and not ref.get("apiVersion"):
        ref["apiVersion"] = "v1"


def _container(c: Obj) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = image_pull_policy(c.get("image") or "")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for port in _dicts(c.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        _http_get(lifecycle.get("postStart"))
        _http_get(lifecycle.get("preStop"))
    for env in _dicts(c.get("env")):
        vf = env.get("valueFrom")
        if isinstance(vf, dict):
            _field_ref(vf.get("fieldRef"))
    # ResourceRequirements is a struct: Go always writes it, if only as {}.
    res = _sub(c, "resources")
    _resource_list(res.get("limits"))
    _resource_list(res.get("requests"))


def _copy_limits_to_requests(res: Any) -> None:
    if not isinstance(res, dict) or not isinstance(res.get("limits"), dict):
        return
    if not res["limits"]:
        return
    requests = _sub(res, "requests")
    for k, v in res["limits"].items():
        requests.setdefault(k, v)


def _volume(v: Obj) -> None:
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(key)
        if isinstance(src, dict) and src.get("defaultMode") is None:
            src["defaultMode"] = 0o644
    hp = v.get("hostPath")
    if isinstance(hp, dict) and hp.get("type") is None:
        hp["type"] = ""
    dapi = v.get("downwardAPI")
    if isinstance(dapi, dict):
        for item in _dicts(dapi.get("items")):
            _field_ref(item.get("fieldRef"))
    proj = v.get("projected")
    if isinstance(proj, dict):
        for src in _dicts(proj.get("sources")):
            sat = src.get("serviceAccountToken")
            if isinstance(sat, dict) and sat.get("expirationSeconds") is None:
                sat["expirationSeconds"] = 3600
            da = src.get("downwardAPI")
            if isinstance(da, dict):
                for item in _dicts(da.get("items")):
                    _field_ref(item.get("fieldRef"))
    iscsi = v.get("iscsi")
    if isinstance(iscsi, dict) and not iscsi.get("iscsiInterface"):
        iscsi["iscsiInterface"] = "default"
    ed = v.get("emptyDir")
    if isinstance(ed, dict) and ed.get("sizeLimit") is not None:
        try:
            ed["sizeLimit"] = quantity.canonical(ed["sizeLimit"])
        except quantity.QuantityError:
            pass


def pod_spec_defaults(spec: Obj) -> None:
    """SetDefaults_PodSpec plus the per-container, volume and probe defaults:
    what every pod template gets. What only a Pod gets is ``_pod``'s."""
    # Not a default but the v1 conversion every PodSpec goes through upstream:
    # serviceAccount is the deprecated alias of serviceAccountName, read when
    # the name is empty and always written beside it.
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if sa:
        spec["serviceAccountName"] = spec["serviceAccount"] = sa
    else:
        spec.pop("serviceAccountName", None)
        spec.pop("serviceAccount", None)
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(key)):
            _container(c)
    for v in _dicts(spec.get("volumes")):
        _volume(v)
    if isinstance(spec.get("resources"), dict):
        _resource_list(spec["resources"].get("limits"))
        _resource_list(spec["resources"].get("requests"))
    _resource_list(spec.get("overhead"))


def _template(holder: Obj) -> None:
    tmpl = holder.get("template")
    if isinstance(tmpl, dict):
        pod_spec_defaults(_sub(tmpl, "spec"))


# core/v1 -------------------------------------------------------------------------

def _pod(obj: Obj) -> None:
    """SetDefaults_Pod: what a Pod gets beyond its PodSpec's defaults, and a
    workload's pod template (Deployment, Job, PodTemplate, ...) does not."""
    spec = _sub(obj, "spec")
    pod_spec_defaults(spec)
    # Limits copied to missing requests, for each container and the pod level.
    for key in ("initContainers", "containers"):
        for c in _dicts(spec.get(key)):
            _copy_limits_to_requests(c.get("resources"))
    if isinstance(spec.get("resources"), dict):
        _copy_limits_to_requests(spec["resources"])
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for key in ("initContainers", "containers"):
            for c in _dicts(spec.get(key)):
                for port in _dicts(c.get("ports")):
                    if not port.get("hostPort") and port.get("containerPort"):
                        port["hostPort"] = port["containerPort"]


def _rc(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels") \
        if isinstance(spec.get("template"), dict) else None
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _sub(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _template(spec)


def _service(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = _sub(spec, "sessionAffinityConfig")
        client_ip = _sub(cfg, "clientIP")
        if client_ip.get("timeoutSeconds") is None:
            client_ip["timeoutSeconds"] = 10800
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in _dicts(spec.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    stype = spec["type"]
    if stype in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and stype != "ExternalName":
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if stype == "LoadBalancer":
        for ing in _dicts((obj.get("status") or {}).get("loadBalancer", {}).get("ingress")):
            if ing.get("ip") and ing.get("ipMode") is None:
                ing["ipMode"] = "VIP"
    # Keep the singular and plural cluster IP fields in step, as upstream's
    # conversion does; allocation itself is the registry's job.
    cip, cips = spec.get("clusterIP"), spec.get("clusterIPs")
    if cip and not cips:
        spec["clusterIPs"] = [cip]
    elif cips and not cip:
        spec["clusterIP"] = cips[0]


def _namespace(obj: Obj) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        _sub(_sub(obj, "metadata"), "labels")["kubernetes.io/metadata.name"] = name
    status = _sub(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Active"


def namespace_finalizers(obj: Obj) -> None:
    """What the namespace strategy sets on create: the ``kubernetes`` finalizer."""
    spec = _sub(obj, "spec")
    fins = spec.get("finalizers") or []
    if "kubernetes" not in fins:
        spec["finalizers"] = [*fins, "kubernetes"]


def _node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict):
        _resource_list(status.get("capacity"))
        _resource_list(status.get("allocatable"))
        if status.get("capacity") and not status.get("allocatable"):
            status["allocatable"] = dict(status["capacity"])


def _secret(obj: Obj) -> None:
    if not obj.get("type"):
        obj["type"] = "Opaque"


def _pv(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    _resource_list(spec.get("capacity"))
    status = _sub(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _pvc(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    res = spec.get("resources")
    if isinstance(res, dict):
        _resource_list(res.get("requests"))
        _resource_list(res.get("limits"))
    status = _sub(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"
    _resource_list(status.get("capacity"))


def _endpoints(obj: Obj) -> None:
    for sub in _dicts(obj.get("subsets")):
        for port in _dicts(sub.get("ports")):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def _limit_range(obj: Obj) -> None:
    for item in _dicts((obj.get("spec") or {}).get("limits")):
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _resource_list(item.get(key))
        if item.get("type") != "Container":
            continue
        default = dict(item.get("default") or {})
        request = dict(item.get("defaultRequest") or {})
        for k, v in (item.get("max") or {}).items():
            default.setdefault(k, v)
        for k, v in default.items():
            request.setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            request.setdefault(k, v)
        if default:
            item["default"] = default
        if request:
            item["defaultRequest"] = request


def _resource_quota(obj: Obj) -> None:
    _resource_list((obj.get("spec") or {}).get("hard"))
    status = obj.get("status")
    if isinstance(status, dict):
        _resource_list(status.get("hard"))
        _resource_list(status.get("used"))


def _pod_template(obj: Obj) -> None:
    _template(obj)


# apps/v1 -------------------------------------------------------------------------

def _replicas_history(spec: Obj, history: bool = True) -> None:
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if history and spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10


def _deployment(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _replicas_history(spec)
    strategy = _sub(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = _sub(strategy, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _template(spec)


def _replica_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _replicas_history(spec, history=False)
    _template(spec)


def _daemon_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    strategy = _sub(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = _sub(strategy, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _template(spec)


def _stateful_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = _sub(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = _sub(strategy, "rollingUpdate")
        if ru.get("partition") is None:
            ru["partition"] = 0
        # MaxUnavailableStatefulSet is beta and on by default.
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
    retention = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    for key in ("whenDeleted", "whenScaled"):
        if not retention.get(key):
            retention[key] = "Retain"
    _replicas_history(spec)
    _template(spec)


# batch/v1 ------------------------------------------------------------------------

MAX_INT32 = 2147483647


def _job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    pfp = spec.get("podFailurePolicy")
    if isinstance(pfp, dict):
        for rule in _dicts(pfp.get("rules")):
            for pattern in _dicts(rule.get("onPodConditions")):
                if not pattern.get("status"):
                    pattern["status"] = "True"
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if pfp is not None else "TerminatingOrFailed"
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False


def _job(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _job_spec(spec)
    tmpl = spec.get("template")
    labels = (tmpl.get("metadata") or {}).get("labels") if isinstance(tmpl, dict) else None
    meta = _sub(obj, "metadata")
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    _template(spec)


def job_selector_labels(uid: str) -> dict[str, str]:
    """The selector the server generates for a Job without manualSelector."""
    return {"batch.kubernetes.io/controller-uid": uid}


def job_template_labels(uid: str, name: str) -> dict[str, str]:
    """The labels the server adds to such a Job's pod template."""
    return {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
            "controller-uid": uid, "job-name": name}


def _cron_job(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict) and isinstance(jt.get("spec"), dict):
        # Only the pod template is defaulted; JobSpec defaults apply to the Jobs made from it.
        _template(jt["spec"])


# other groups -----------------------------------------------------------------

def _hpa_v2(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for key, default in (("scaleUp", _HPA_SCALE_UP), ("scaleDown", _HPA_SCALE_DOWN)):
            rules = behavior.get(key)
            if not isinstance(rules, dict):
                behavior[key] = {k: (list(map(dict, v)) if isinstance(v, list) else v)
                                 for k, v in default.items()}
                continue
            for k, v in default.items():
                if rules.get(k) is None:
                    rules[k] = list(map(dict, v)) if isinstance(v, list) else v


def _hpa_v1(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1


def _endpoint_slice(obj: Obj) -> None:
    for port in _dicts(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _network_policy(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for port in _dicts(rule.get("ports")):
                if port.get("protocol") is None:
                    port["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _binding(obj: Obj) -> None:
    ref = _sub(obj, "roleRef")
    if not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subj in _dicts(obj.get("subjects")):
        if subj.get("apiGroup") is None or subj.get("apiGroup") == "":
            if subj.get("kind") in ("User", "Group"):
                subj["apiGroup"] = RBAC_GROUP
            elif subj.get("kind") == "ServiceAccount":
                # "" upstream, which its omitempty leaves out of the object.
                subj.pop("apiGroup", None)


def _storage_class(obj: Obj) -> None:
    if obj.get("reclaimPolicy") is None:
        obj["reclaimPolicy"] = "Delete"
    if obj.get("volumeBindingMode") is None:
        obj["volumeBindingMode"] = "Immediate"


def _csi_driver(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    for key, val in (("attachRequired", True), ("podInfoOnMount", False),
                     ("storageCapacity", False), ("requiresRepublish", False),
                     ("fsGroupPolicy", "ReadWriteOnceWithFSType"),
                     ("volumeLifecycleModes", ["Persistent"])):
        if spec.get(key) is None:
            spec[key] = list(val) if isinstance(val, list) else val


def _priority_class(obj: Obj) -> None:
    if obj.get("preemptionPolicy") is None:
        obj["preemptionPolicy"] = "PreemptLowerPriority"


def _webhooks(obj: Obj, mutating: bool) -> None:
    """admissionregistration/v1 defaults of every webhook in a configuration."""
    for hook in _dicts(obj.get("webhooks")):
        for key, val in (("failurePolicy", "Fail"), ("matchPolicy", "Equivalent"),
                         ("timeoutSeconds", 10)):
            if hook.get(key) is None:
                hook[key] = val
        for key in ("namespaceSelector", "objectSelector"):
            if hook.get(key) is None:
                hook[key] = {}
        if mutating and hook.get("reinvocationPolicy") is None:
            hook["reinvocationPolicy"] = "Never"
        for rule in _dicts(hook.get("rules")):
            if rule.get("scope") is None:
                rule["scope"] = "*"
        service = _sub(hook, "clientConfig").get("service")
        if isinstance(service, dict) and service.get("port") is None:
            service["port"] = 443


_DEFAULTERS = {
    ("", "Pod"): _pod,
    ("", "ReplicationController"): _rc,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("", "Node"): _node,
    ("", "Secret"): _secret,
    ("", "PersistentVolume"): _pv,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Endpoints"): _endpoints,
    ("", "LimitRange"): _limit_range,
    ("", "ResourceQuota"): _resource_quota,
    ("", "PodTemplate"): _pod_template,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replica_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("apps", "StatefulSet"): _stateful_set,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa_v2,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding,
    ("storage.k8s.io", "StorageClass"): _storage_class,
    ("storage.k8s.io", "CSIDriver"): _csi_driver,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        lambda obj: _webhooks(obj, True),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        lambda obj: _webhooks(obj, False),
}


def apply_defaults(group: str, kind: str, obj: Obj, version: str = "") -> None:
    """Fill in ``obj``'s defaults in place. ``version`` matters only where
    versions default differently (autoscaling/v1 HPAs get only minReplicas);
    when not given it is read from ``obj["apiVersion"]``."""
    version = version or str(obj.get("apiVersion") or "").rpartition("/")[2]
    if group == "autoscaling" and kind == "HorizontalPodAutoscaler" and version == "v1":
        _hpa_v1(obj)
        return
    fn = _DEFAULTERS.get((group, kind))
    if fn is not None:
        fn(obj)
