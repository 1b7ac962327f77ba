"""Server-side printing: the meta.k8s.io/v1 Table that ``kubectl get`` asks
for (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``), with the
columns and cell values of kube-apiserver's printers
(pkg/printers/internalversion/printers.go), and the PartialObjectMetadata
(List) forms asked for with ``as=PartialObjectMetadata[List]``.

kube-apiserver always prints the wide form (every column, priority 0 and 1);
kubectl hides priority-1 columns unless ``-o wide``. Resources without a
printer get upstream's default table: Name and Created At.

Rows are built from the wire (v1) JSON. Per-row work is kept small because a
LIST of ten thousand pods is turned into a table on every ``kubectl get``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pinnace.api import schema
from pinnace.api.duration import human_duration  # noqa: F401 - part of this module's API
from pinnace.api.selectors import (
    SelectorError,
    format_label_selector,
    format_labels,
    label_selector_from_dict,
)

Obj = Mapping[str, Any]
RowFn = Callable[[Obj, float], list[Any]]

# --- durations and timestamps -----------------------------------------------


_ts_cache: dict[str, float | None] = {}


def _epoch(ts: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp; None when unset."""
    if not ts:
        return None
    v = _ts_cache.get(ts)
    if v is None and ts not in _ts_cache:
        try:
            v = datetime.fromisoformat(ts).timestamp()
        except (TypeError, ValueError):
            v = None
        if len(_ts_cache) > 100_000:
            _ts_cache.clear()
        _ts_cache[ts] = v
    return v


def _since(ts: Any, now: float) -> str:
    """translateTimestampSince: "<unknown>" for an unset time."""
    t = _epoch(ts)
    if t is None:
        return "<unknown>"
    return human_duration(now - t)


since = _since  # the age a Table shows for a timestamp (rowcache fills it in)


def _age(obj: Obj, now: float) -> str:
    return _since(obj["metadata"].get("creationTimestamp"), now)


# --- column definitions ------------------------------------------------------

_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CORE = "io.k8s.api.core.v1."


@functools.cache
def _doc(definition: str, prop: str) -> str:
    try:
        return str(schema.definitions()[definition]["properties"][prop].get("description", ""))
    except KeyError:
        return ""


Desc = str | tuple[str, str]


def _c(name: str, type_: str = "string", desc: Desc = "", priority: int = 0,
       fmt: str = "") -> tuple[str, str, str, Desc, int]:
    return (name, type_, fmt, desc, priority)


NAME = _c("Name", fmt="name", desc=(_META, "name"))
_FC = "io.k8s.api.flowcontrol.v1."
AGE = _c("Age", desc=(_META, "creationTimestamp"))
CONTAINERS = _c("Containers", desc="Names of each container in the template.", priority=1)
IMAGES = _c("Images", desc="Images referenced by each container in the template.", priority=1)


def _selector_col(definition: str) -> tuple[str, str, str, Desc, int]:
    return _c("Selector", desc=(definition, "selector"), priority=1)


# --- cell helpers ------------------------------------------------------------

def _containers_cells(pod_spec: Obj | None) -> tuple[str, str]:
    cs = (pod_spec or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs))


def _template_spec(obj: Obj) -> Obj:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) else default


def _bool_ptr(v: Any) -> str:
    if v is None:
        return "<unset>"
    return "True" if v else "False"


def _quantity(v: Any) -> str:
    # Stored quantities are already canonical strings; an unset one prints 0.
    if v is None:
        return "0"
    return str(v)


def _list_with_more(items: list[str], count: int, limit: int = 3) -> str:
    if count > limit:
        return f"{','.join(items[:limit])} + {count - limit} more..."
    return ",".join(items) or "<unset>"


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- per-kind printers -------------------------------------------------------

_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed",
                "message": "The pod failed."}]


def _pod_cells(pod: Obj, now: float) -> list[Any]:
    meta = pod["metadata"]
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = spec.get("containers") or ()
    init_specs = spec.get("initContainers") or ()
    total = len(containers)
    ready = 0
    restarts = 0
    last_restart = 0.0
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or ()
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    sidecars: set[str] = set()
    for ic in init_specs:
        if ic.get("restartPolicy") == "Always":
            sidecars.add(ic.get("name", ""))
            total += 1

    initializing = False
    sidecar_restarts = 0
    sidecar_last = 0.0
    init_statuses = status.get("initContainerStatuses") or ()
    n_init = len(init_specs)
    for i, cs in enumerate(init_statuses):
        rc = cs.get("restartCount") or 0
        restarts += rc
        lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        t = _epoch(lt) if lt else None
        if t is not None and t > last_restart:
            last_restart = t
        sidecar = cs.get("name", "") in sidecars
        if sidecar:
            sidecar_restarts += rc
            if t is not None and t > sidecar_last:
                sidecar_last = t
        state = cs.get("state") or {}
        term = state.get("terminated")
        waiting = state.get("waiting")
        if term is not None and term.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") \
                and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    if not initializing or any(c.get("type") == "Initialized" and c.get("status") == "True"
                               for c in conditions):
        restarts = sidecar_restarts
        last_restart = sidecar_last
        has_running = False
        statuses = status.get("containerStatuses") or ()
        for cs in reversed(statuses):
            restarts += cs.get("restartCount") or 0
            last_state = cs.get("lastState")
            if last_state:
                lt = (last_state.get("terminated") or {}).get("finishedAt")
                t = _epoch(lt) if lt else None
                if t is not None and t > last_restart:
                    last_restart = t
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            term = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                if term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{term.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if any(c.get("type") == "Ready" and c.get("status") == "True"
                                      for c in conditions) else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_s = str(restarts)
    if restarts and last_restart:
        restarts_s = f"{restarts} ({human_duration(now - last_restart)} ago)"

    ips = status.get("podIPs")
    pod_ip = (ips[0].get("ip") if ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates")
    if gates:
        by_type: dict[Any, Any] = {}
        for c in conditions:
            by_type.setdefault(c.get("type"), c.get("status"))
        true = sum(by_type.get(g.get("conditionType")) == "True" for g in gates)
        gates_s = f"{true}/{len(gates)}"
    else:
        gates_s = "<none>"
    return [meta.get("name", ""), f"{ready}/{total}", reason, restarts_s,
            _age(pod, now), pod_ip, spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_s]


def _pod_conditions(pod: Obj) -> list[dict[str, str]] | None:
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return _POD_SUCCEEDED
    if phase == "Failed":
        return _POD_FAILED
    return None


def _pod_template_cells(obj: Obj, now: float) -> list[Any]:
    tmpl = obj.get("template") or {}
    names, images = _containers_cells(tmpl.get("spec"))
    return [obj["metadata"].get("name", ""), names, images,
            format_labels((tmpl.get("metadata") or {}).get("labels"))]


def _int_or_string(v: Any) -> str:
    return "N/A" if v is None else str(v)


def _pdb_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    return [obj["metadata"].get("name", ""), _int_or_string(spec.get("minAvailable")),
            _int_or_string(spec.get("maxUnavailable")),
            _int((obj.get("status") or {}).get("disruptionsAllowed")), _age(obj, now)]


def _rc_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_cells((spec.get("template") or {}).get("spec"))
    return [obj["metadata"].get("name", ""), _int(spec.get("replicas"), 1),
            _int(status.get("replicas")), _int(status.get("readyReplicas")), _age(obj, now),
            names, images, format_labels(spec.get("selector"))]


def _rs_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_cells(_template_spec(obj))
    return [obj["metadata"].get("name", ""), _int(spec.get("replicas"), 1),
            _int(status.get("replicas")), _int(status.get("readyReplicas")), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


def _job_condition(conds: Iterable[Obj], type_: str) -> bool:
    for c in conds:
        if c.get("type") == type_:
            return bool(c.get("status") == "True")
    return False


def _job_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    else:
        par = _int(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {par}" if par > 1 else f"{succeeded}/1"
    start = _epoch(status.get("startTime"))
    done = _epoch(status.get("completionTime"))
    if start is None:
        duration = ""
    elif done is None:
        duration = human_duration(now - start)
    else:
        duration = human_duration(done - start)
    conds = status.get("conditions") or ()
    if _job_condition(conds, "Complete"):
        state = "Complete"
    elif _job_condition(conds, "Failed"):
        state = "Failed"
    elif obj["metadata"].get("deletionTimestamp"):
        state = "Terminating"
    elif _job_condition(conds, "Suspended"):
        state = "Suspended"
    elif _job_condition(conds, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers_cells(_template_spec(obj))
    return [obj["metadata"].get("name", ""), state, completions, duration, _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


def _cronjob_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    last = status.get("lastScheduleTime")
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers_cells((job_spec.get("template") or {}).get("spec"))
    return [obj["metadata"].get("name", ""), spec.get("schedule", ""),
            spec.get("timeZone") if spec.get("timeZone") is not None else "<none>",
            _bool_ptr(spec.get("suspend")), len(status.get("active") or ()),
            _since(last, now) if last else "<none>", _age(obj, now),
            names, images, format_label_selector(job_spec.get("selector"))]


def _lb_status(lb: Obj | None) -> str:
    # Server-side printing is always wide, so the address list is not clipped.
    found = set()
    for ing in (lb or {}).get("ingress") or ():
        if ing.get("ip"):
            found.add(ing["ip"])
        elif ing.get("hostname"):
            found.add(ing["hostname"])
    return ",".join(sorted(found))


def _service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    ext = spec.get("externalIPs") or []
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else "<none>"
    if t == "LoadBalancer":
        lb = _lb_status((svc.get("status") or {}).get("loadBalancer"))
        if ext:
            return ",".join(([*lb.split(",")] if lb else []) + list(ext))
        return lb or "<pending>"
    if t == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(ports: Iterable[Obj]) -> str:
    out = []
    for p in ports:
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            out.append(f"{p.get('port', 0)}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port', 0)}/{proto}")
    return ",".join(out) or "<none>"


def _service_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    ips = spec.get("clusterIPs")
    cluster_ip = (ips[0] if ips else spec.get("clusterIP")) or "<none>"
    return [obj["metadata"].get("name", ""), spec.get("type", ""), cluster_ip,
            _service_external_ip(obj), _service_ports(spec.get("ports") or ()),
            _age(obj, now), format_labels(spec.get("selector"))]


def _ingress_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    hosts: list[str] = []
    more = False
    for r in rules:
        if len(hosts) == 3:
            more = True
        if not more and r.get("host"):
            hosts.append(r["host"])
    if not hosts:
        hosts_s = "*"
    elif more:
        hosts_s = f"{','.join(hosts)} + {len(rules) - 3} more..."
    else:
        hosts_s = ",".join(hosts)
    cls = spec.get("ingressClassName")
    return [obj["metadata"].get("name", ""), cls if cls is not None else "<none>", hosts_s,
            _lb_status((obj.get("status") or {}).get("loadBalancer")),
            "80, 443" if spec.get("tls") else "80", _age(obj, now)]


def _ingress_class_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    params = spec.get("parameters")
    p = "<none>"
    if params is not None:
        p = params.get("kind", "")
        if params.get("apiGroup") is not None:
            p += "." + params["apiGroup"]
        p += "/" + params.get("name", "")
    return [obj["metadata"].get("name", ""), spec.get("controller", ""), p, _age(obj, now)]


def _statefulset_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    names, images = _containers_cells(_template_spec(obj))
    return [obj["metadata"].get("name", ""),
            f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
            _age(obj, now), names, images]


def _daemonset_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    tspec = _template_spec(obj)
    names, images = _containers_cells(tspec)
    return [obj["metadata"].get("name", ""), _int(status.get("desiredNumberScheduled")),
            _int(status.get("currentNumberScheduled")), _int(status.get("numberReady")),
            _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable")),
            format_labels(tspec.get("nodeSelector")), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


def _endpoints_cells(obj: Obj, now: float) -> list[Any]:
    subsets = obj.get("subsets") or []
    if not subsets:
        text = "<none>"
    else:
        items: list[str] = []
        more = False
        count = 0
        for ss in subsets:
            addrs = ss.get("addresses") or []
            ports = ss.get("ports") or []
            if not ports:
                count += len(addrs)
                for a in addrs:
                    if len(items) == 3:
                        more = True
                        break
                    items.append(a.get("ip", ""))
                continue
            for p in ports:
                count += len(addrs)
                for a in addrs:
                    if len(items) == 3:
                        more = True
                        break
                    items.append(_join_host_port(a.get("ip", ""), p.get("port", 0)))
        text = ",".join(items)
        if more:
            text = f"{text} + {count - 3} more..."
    return [obj["metadata"].get("name", ""), text, _age(obj, now)]


def _endpointslice_cells(obj: Obj, now: float) -> list[Any]:
    ports = obj.get("ports") or []
    pitems = []
    for p in ports[:3]:
        if p.get("port") is not None:
            pitems.append(str(p["port"]))
        elif p.get("name") is not None:
            pitems.append(p["name"])
        else:
            pitems.append("*")
    addrs = [a for ep in obj.get("endpoints") or () for a in ep.get("addresses") or ()]
    return [obj["metadata"].get("name", ""), obj.get("addressType", ""),
            _list_with_more(pitems, len(ports)), _list_with_more(addrs[:3], len(addrs)),
            _age(obj, now)]


def _node_roles(labels: Mapping[str, str]) -> str:
    roles = set()
    for k, v in labels.items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(status: Obj, type_: str) -> str:
    for a in status.get("addresses") or ():
        if a.get("type") == type_:
            return str(a.get("address", ""))
    return "<none>"


def _node_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    states = []
    ready = None
    for c in status.get("conditions") or ():
        if c.get("type") == "Ready":
            ready = c  # the last one wins, as in upstream's condition map
    if ready is not None:
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}
    return [obj["metadata"].get("name", ""), ",".join(states),
            _node_roles(obj["metadata"].get("labels") or {}), _age(obj, now),
            info.get("kubeletVersion", ""), _node_address(status, "InternalIP"),
            _node_address(status, "ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _core_event(ev: Obj) -> Obj:
    """An events.k8s.io/v1 Event seen with core/v1 field names."""
    if "involvedObject" in ev or not ("regarding" in ev or "note" in ev
                                      or "deprecatedSource" in ev):
        return ev
    return {
        "metadata": ev.get("metadata") or {}, "involvedObject": ev.get("regarding") or {},
        "reason": ev.get("reason", ""), "message": ev.get("note", ""),
        "source": ev.get("deprecatedSource") or {}, "type": ev.get("type", ""),
        "firstTimestamp": ev.get("deprecatedFirstTimestamp"),
        "lastTimestamp": ev.get("deprecatedLastTimestamp"),
        "count": ev.get("deprecatedCount", 0), "eventTime": ev.get("eventTime"),
        "series": ev.get("series"), "reportingComponent": ev.get("reportingController", ""),
        "reportingInstance": ev.get("reportingInstance", ""),
    }


def _event_cells(obj: Obj, now: float) -> list[Any]:
    ev = _core_event(obj)
    first = ev.get("firstTimestamp")
    first_s = _since(first, now) if _epoch(first) is not None else _since(ev.get("eventTime"), now)
    last = ev.get("lastTimestamp")
    last_s = _since(last, now) if _epoch(last) is not None else first_s
    count = _int(ev.get("count"))
    series = ev.get("series")
    if series is not None:
        last_s = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    io = ev.get("involvedObject") or {}
    kind = str(io.get("kind", "")).lower()
    target = f"{kind}/{io['name']}" if io.get("name") else kind
    src = ev.get("source") or {}
    component = src.get("component") or ev.get("reportingComponent") or ""
    instance = src.get("host") or ev.get("reportingInstance") or ""
    source = f"{component}, {instance}" if instance else component
    return [last_s, ev.get("type", ""), ev.get("reason", ""), target, io.get("fieldPath", ""),
            source, str(ev.get("message", "")).strip(), first_s, count,
            ev["metadata"].get("name", "")]


def _role_binding_cells(obj: Obj, now: float) -> list[Any]:
    ref = obj.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in obj.get("subjects") or ():
        kind = s.get("kind")
        if kind == "User":
            users.append(s.get("name", ""))
        elif kind == "Group":
            groups.append(s.get("name", ""))
        elif kind == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return [obj["metadata"].get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            _age(obj, now), ", ".join(users), ", ".join(groups), ", ".join(sas)]


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: Iterable[str] | None) -> str:
    have = set(modes or ())
    return ",".join(short for long, short in _ACCESS_MODES if long in have)


_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"


def _pv_cells(obj: Obj, now: float) -> list[Any]:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "")
    ann = meta.get("annotations") or {}
    cls = ann[_BETA_CLASS] if _BETA_CLASS in ann else spec.get("storageClassName", "")
    vac = spec.get("volumeAttributesClassName")
    vm = spec.get("volumeMode")
    return [meta.get("name", ""), _quantity((spec.get("capacity") or {}).get("storage")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            phase, claim, cls, vac if vac is not None else "<unset>", status.get("reason", ""),
            _age(obj, now), vm if vm is not None else "<unset>"]


def _pvc_cells(obj: Obj, now: float) -> list[Any]:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = _quantity((status.get("capacity") or {}).get("storage"))
    ann = meta.get("annotations") or {}
    if _BETA_CLASS in ann:
        cls = ann[_BETA_CLASS]
    else:
        cls = spec.get("storageClassName") or ""
    vac = spec.get("volumeAttributesClassName")
    vm = spec.get("volumeMode")
    return [meta.get("name", ""), phase, spec.get("volumeName", ""), capacity, modes, cls,
            vac if vac is not None else "<unset>", _age(obj, now),
            vm if vm is not None else "<unset>"]


def _deployment_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    try:
        selector = str(label_selector_from_dict(spec.get("selector"), plain_map=False))
    except SelectorError:
        selector = "<invalid>"
    names, images = _containers_cells(_template_spec(obj))
    return [obj["metadata"].get("name", ""),
            f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'), 1)}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")),
            _age(obj, now), names, images, selector]


def _q(v: Any) -> str:
    return "<nil>" if v is None else str(v)


def _hpa_metrics(obj: Obj) -> str:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    specs = spec.get("metrics")
    statuses = status.get("currentMetrics") or []
    if specs is None and "targetCPUUtilizationPercentage" in spec:
        # autoscaling/v1 shape
        specs = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}}]
        cur = status.get("currentCPUUtilizationPercentage")
        statuses = [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": cur}}}] if cur is not None else []
    if not specs:
        return "<none>"
    out: list[str] = []
    for i, m in enumerate(specs):
        st = statuses[i] if i < len(statuses) else {}
        t = m.get("type")
        if t in ("External", "Object", "Pods"):
            key = {"External": "external", "Object": "object", "Pods": "pods"}[t]
            target = (m.get(key) or {}).get("target") or {}
            cur_src = st.get(key)
            cur = (cur_src or {}).get("current") or {}
            if t == "Pods" or target.get("averageValue") is not None:
                current = "<unknown>"
                if cur_src is not None and (t == "Pods" or cur.get("averageValue") is not None):
                    current = _q(cur.get("averageValue"))
                suffix = "" if t == "Pods" else " (avg)"
                out.append(f"{current}/{_q(target.get('averageValue'))}{suffix}")
            else:
                current = _q(cur.get("value")) if cur_src is not None else "<unknown>"
                out.append(f"{current}/{_q(target.get('value'))}")
        elif t in ("Resource", "ContainerResource"):
            key = "resource" if t == "Resource" else "containerResource"
            src = m.get(key) or {}
            target = src.get("target") or {}
            cur_src = st.get(key)
            cur = (cur_src or {}).get("current") or {}
            name = src.get("name", "")
            if target.get("averageValue") is not None:
                current = _q(cur.get("averageValue")) if cur_src is not None else "<unknown>"
                out.append(f"{name}: {current}/{target['averageValue']}")
            else:
                current = "<unknown>"
                if cur_src is not None and cur.get("averageUtilization") is not None:
                    current = f"{cur['averageUtilization']}%"
                tgt = "<auto>"
                if target.get("averageUtilization") is not None:
                    tgt = f"{target['averageUtilization']}%"
                out.append(f"{name}: {current}/{tgt}")
        else:
            out.append("<unknown type>")
    if len(out) > 2:
        return f"{', '.join(out[:2])} + {len(out) - 2} more..."
    return ", ".join(out)


def _hpa_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    mn = spec.get("minReplicas")
    return [obj["metadata"].get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            _hpa_metrics(obj), str(mn) if mn is not None else "<unset>",
            _int(spec.get("maxReplicas")),
            _int((obj.get("status") or {}).get("currentReplicas")), _age(obj, now)]


def _configmap_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""),
            len(obj.get("data") or ()) + len(obj.get("binaryData") or ()), _age(obj, now)]


def _secret_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), obj.get("type", ""), len(obj.get("data") or ()),
            _age(obj, now)]


def _service_account_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), len(obj.get("secrets") or ()), _age(obj, now)]


def _namespace_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), (obj.get("status") or {}).get("phase", ""),
            _age(obj, now)]


def _network_policy_cells(obj: Obj, now: float) -> list[Any]:
    sel = (obj.get("spec") or {}).get("podSelector") or {}
    return [obj["metadata"].get("name", ""), format_label_selector(sel), _age(obj, now)]


def _storage_class_cells(obj: Obj, now: float) -> list[Any]:
    meta = obj["metadata"]
    ann = meta.get("annotations") or {}
    name = meta.get("name", "")
    if ann.get("storageclass.kubernetes.io/is-default-class") == "true" or \
            ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", bool(obj.get("allowVolumeExpansion")),
            _age(obj, now)]


def _lease_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""),
            (obj.get("spec") or {}).get("holderIdentity") or "", _age(obj, now)]


def _controller_revision_cells(obj: Obj, now: float) -> list[Any]:
    owner = None
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            owner = ref
            break
    controller = "<none>"
    if owner is not None:
        api_version = owner.get("apiVersion", "")
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
        kind = owner.get("kind", "")
        gk = f"{kind}.{group}" if group else kind
        controller = f"{gk.lower()}/{owner.get('name', '')}" if gk else owner.get("name", "")
    return [obj["metadata"].get("name", ""), controller, _int(obj.get("revision")),
            _age(obj, now)]


def _resource_quota_cells(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status") or {}
    hard = status.get("hard") or {}
    used = status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for res in sorted(hard):
        parts = res.split(".")
        target = limits if len(parts) > 1 and parts[0] == "limits" else requests
        target.append(f"{res}: {_quantity(used.get(res))}/{_quantity(hard[res])}")
    return [obj["metadata"].get("name", ""), ", ".join(requests), ", ".join(limits),
            _age(obj, now)]


def _priority_class_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), _int(obj.get("value")),
            bool(obj.get("globalDefault")), _age(obj, now), obj.get("preemptionPolicy") or ""]


def _component_status_cells(obj: Obj, now: float) -> list[Any]:
    cond: Obj = next((c for c in obj.get("conditions") or [] if c.get("type") == "Healthy"), {})
    healthy = "Healthy" if cond.get("status") == "True" else "Unhealthy"
    return [obj["metadata"].get("name", ""), healthy, cond.get("message") or "",
            cond.get("error") or ""]


def _api_service_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    service = spec.get("service")
    where = f"{service.get('namespace', '')}/{service.get('name', '')}" if service else "Local"
    cond: Obj = next((c for c in (obj.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Available"), {})
    available = cond.get("status") or "Unknown"
    if available != "True" and cond.get("reason"):
        available = f"{available} ({cond['reason']})"
    return [obj["metadata"].get("name", ""), where, available, _age(obj, now)]


def _runtime_class_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), obj.get("handler") or "", _age(obj, now)]


def _flow_schema_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    method = (spec.get("distinguisherMethod") or {}).get("type") or "<none>"
    dangling = next((c.get("status") for c in (obj.get("status") or {}).get("conditions") or []
                     if c.get("type") == "Dangling"), None)
    return [obj["metadata"].get("name", ""),
            (spec.get("priorityLevelConfiguration") or {}).get("name", ""),
            spec.get("matchingPrecedence", 0), method, _age(obj, now),
            {"True": "True", "False": "False"}.get(str(dangling), "?")]


def _priority_level_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    limited = spec.get("limited") or {}
    queuing = (limited.get("limitResponse") or {}).get("queuing") or {}
    none = "<none>"
    return [obj["metadata"].get("name", ""), spec.get("type", ""),
            limited.get("nominalConcurrencyShares", none) if limited else none,
            queuing.get("queues", none), queuing.get("handSize", none),
            queuing.get("queueLengthLimit", none), _age(obj, now)]


def _webhook_configuration_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), len(obj.get("webhooks") or []), _age(obj, now)]


def _csr_condition(obj: Obj) -> str:
    """extractCSRStatus: Denied or Approved or Pending, then Failed, then Issued."""
    status = obj.get("status") or {}
    types = {c.get("type") for c in status.get("conditions") or []}
    out = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        out += ",Failed"
    if status.get("certificate"):
        out += ",Issued"
    return out


def _csr_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    exp = spec.get("expirationSeconds")
    return [obj["metadata"].get("name", ""), _age(obj, now), spec.get("signerName") or "<none>",
            spec.get("username", ""), human_duration(exp) if exp else "<none>",
            _csr_condition(obj)]


def _volume_attachment_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    return [obj["metadata"].get("name", ""), spec.get("attacher", ""),
            (spec.get("source") or {}).get("persistentVolumeName") or "",
            spec.get("nodeName", ""), bool((obj.get("status") or {}).get("attached")),
            _age(obj, now)]


def _csi_node_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), len((obj.get("spec") or {}).get("drivers") or ()),
            _age(obj, now)]


def _csi_driver_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    attach = spec.get("attachRequired")
    tokens = spec.get("tokenRequests")
    return [obj["metadata"].get("name", ""), True if attach is None else bool(attach),
            bool(spec.get("podInfoOnMount")), bool(spec.get("storageCapacity")),
            "<unset>" if tokens is None else ",".join(t.get("audience", "") for t in tokens),
            bool(spec.get("requiresRepublish")),
            ",".join(spec.get("volumeLifecycleModes") or ()) or "<none>", _age(obj, now)]


def _csi_capacity_cells(obj: Obj, now: float) -> list[Any]:
    cap = obj.get("capacity")
    return [obj["metadata"].get("name", ""), obj.get("storageClassName", ""),
            "<unset>" if cap is None else str(cap)]


# --- the printer table -------------------------------------------------------

Column = tuple[str, str, str, Desc, int]
def _scale_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"].get("name", ""), _int((obj.get("spec") or {}).get("replicas")),
            _int((obj.get("status") or {}).get("replicas")), _age(obj, now)]


# The printer key of autoscaling/v1 Scale (a subresource: no resource is named so).
SCALE = ("autoscaling", "scale")

_APPS = "io.k8s.api.apps.v1."
_BATCH = "io.k8s.api.batch.v1."
_STORAGE = "io.k8s.api.storage.v1."
_CERTS = "io.k8s.api.certificates.v1."

_POD_COLUMNS: list[Column] = [
    NAME,
    _c("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
    _c("Status", desc="The aggregate status of the containers in this pod."),
    _c("Restarts", desc="The number of times the containers in this pod have been restarted "
                        "and when the last container in this pod has restarted."),
    AGE,
    _c("IP", desc=(_CORE + "PodStatus", "podIP"), priority=1),
    _c("Node", desc=(_CORE + "PodSpec", "nodeName"), priority=1),
    _c("Nominated Node", desc=(_CORE + "PodStatus", "nominatedNodeName"), priority=1),
    _c("Readiness Gates", desc=(_CORE + "PodSpec", "readinessGates"), priority=1),
]
_EVENT_COLUMNS: list[Column] = [
    _c("Last Seen", desc=(_CORE + "Event", "lastTimestamp")),
    _c("Type", desc=(_CORE + "Event", "type")),
    _c("Reason", desc=(_CORE + "Event", "reason")),
    _c("Object", desc=(_CORE + "Event", "involvedObject")),
    _c("Subobject", desc=(_CORE + "ObjectReference", "fieldPath"), priority=1),
    _c("Source", desc=(_CORE + "Event", "source"), priority=1),
    _c("Message", desc=(_CORE + "Event", "message")),
    _c("First Seen", desc=(_CORE + "Event", "firstTimestamp"), priority=1),
    _c("Count", desc=(_CORE + "Event", "count"), priority=1),
    _c("Name", desc=(_META, "name"), priority=1, fmt="name"),
]
_HPA_COLUMNS: list[Column] = [
    NAME,
    _c("Reference", desc=("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
                          "scaleTargetRef")),
    _c("Targets", desc=("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
    _c("MinPods", desc=("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
    _c("MaxPods", desc=("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
    _c("Replicas", desc=("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
                         "currentReplicas")),
    AGE,
]
_RB_COLUMNS = [
    NAME, _c("Role", desc=("io.k8s.api.rbac.v1.RoleBinding", "roleRef")), AGE,
    _c("Users", desc="Users in the roleBinding", priority=1),
    _c("Groups", desc="Groups in the roleBinding", priority=1),
    _c("ServiceAccounts", desc="ServiceAccounts in the roleBinding", priority=1),
]
_CRB_COLUMNS = [
    NAME, _c("Role", desc=("io.k8s.api.rbac.v1.ClusterRoleBinding", "roleRef")), AGE,
    _c("Users", desc="Users in the clusterRoleBinding", priority=1),
    _c("Groups", desc="Groups in the clusterRoleBinding", priority=1),
    _c("ServiceAccounts", desc="ServiceAccounts in the clusterRoleBinding", priority=1),
]

PRINTERS: dict[tuple[str, str], tuple[list[Column], RowFn]] = {
    ("", "pods"): (_POD_COLUMNS, _pod_cells),
    ("", "podtemplates"): ([
        NAME, CONTAINERS[:4] + (0,), IMAGES[:4] + (0,),
        _c("Pod Labels", desc="The labels for the pod template."),
    ], _pod_template_cells),
    ("policy", "poddisruptionbudgets"): ([
        NAME,
        _c("Min Available", desc="The minimum number of pods that must be available."),
        _c("Max Unavailable", desc="The maximum number of pods that may be unavailable."),
        _c("Allowed Disruptions", "integer",
           desc="Calculated number of pods that may be disrupted at this time."),
        AGE,
    ], _pdb_cells),
    ("", "replicationcontrollers"): ([
        NAME,
        _c("Desired", "integer", desc=(_CORE + "ReplicationControllerSpec", "replicas")),
        _c("Current", "integer", desc=(_CORE + "ReplicationControllerStatus", "replicas")),
        _c("Ready", "integer", desc=(_CORE + "ReplicationControllerStatus", "readyReplicas")),
        AGE, CONTAINERS, IMAGES, _selector_col(_CORE + "ReplicationControllerSpec"),
    ], _rc_cells),
    ("apps", "replicasets"): ([
        NAME,
        _c("Desired", "integer", desc=(_APPS + "ReplicaSetSpec", "replicas")),
        _c("Current", "integer", desc=(_APPS + "ReplicaSetStatus", "replicas")),
        _c("Ready", "integer", desc=(_APPS + "ReplicaSetStatus", "readyReplicas")),
        AGE, CONTAINERS, IMAGES, _selector_col(_APPS + "ReplicaSetSpec"),
    ], _rs_cells),
    ("apps", "daemonsets"): ([
        NAME,
        _c("Desired", "integer", desc=(_APPS + "DaemonSetStatus", "desiredNumberScheduled")),
        _c("Current", "integer", desc=(_APPS + "DaemonSetStatus", "currentNumberScheduled")),
        _c("Ready", "integer", desc=(_APPS + "DaemonSetStatus", "numberReady")),
        _c("Up-to-date", "integer", desc=(_APPS + "DaemonSetStatus", "updatedNumberScheduled")),
        _c("Available", "integer", desc=(_APPS + "DaemonSetStatus", "numberAvailable")),
        _c("Node Selector", desc=(_CORE + "PodSpec", "nodeSelector")),
        AGE, CONTAINERS, IMAGES, _selector_col(_APPS + "DaemonSetSpec"),
    ], _daemonset_cells),
    ("batch", "jobs"): ([
        NAME,
        _c("Status", desc="Status of the job."),
        _c("Completions", desc=(_BATCH + "JobStatus", "succeeded")),
        _c("Duration", desc="Time required to complete the job."),
        AGE, CONTAINERS, IMAGES, _selector_col(_BATCH + "JobSpec"),
    ], _job_cells),
    ("batch", "cronjobs"): ([
        NAME,
        _c("Schedule", desc=(_BATCH + "CronJobSpec", "schedule")),
        _c("Timezone", desc=(_BATCH + "CronJobSpec", "timeZone")),
        _c("Suspend", "boolean", desc=(_BATCH + "CronJobSpec", "suspend")),
        _c("Active", "integer", desc=(_BATCH + "CronJobStatus", "active")),
        _c("Last Schedule", desc=(_BATCH + "CronJobStatus", "lastScheduleTime")),
        AGE, CONTAINERS, IMAGES, _selector_col(_BATCH + "JobSpec"),
    ], _cronjob_cells),
    ("", "services"): ([
        NAME,
        _c("Type", desc=(_CORE + "ServiceSpec", "type")),
        _c("Cluster-IP", desc=(_CORE + "ServiceSpec", "clusterIP")),
        _c("External-IP", desc=(_CORE + "ServiceSpec", "externalIPs")),
        _c("Port(s)", desc=(_CORE + "ServiceSpec", "ports")),
        AGE, _selector_col(_CORE + "ServiceSpec"),
    ], _service_cells),
    ("networking.k8s.io", "ingresses"): ([
        NAME,
        _c("Class", desc="The name of the IngressClass resource that should be used for "
                         "additional configuration"),
        _c("Hosts", desc="Hosts that incoming requests are matched against before the "
                         "ingress rule"),
        _c("Address", desc="Address is a list containing ingress points for the load-balancer"),
        _c("Ports", desc="Ports of TLS configurations that open"),
        AGE,
    ], _ingress_cells),
    ("networking.k8s.io", "ingressclasses"): ([
        NAME,
        _c("Controller", desc="Controller that is responsible for handling this class"),
        _c("Parameters", desc="A reference to a resource with additional parameters"),
        AGE,
    ], _ingress_class_cells),
    ("apps", "statefulsets"): ([
        NAME, _c("Ready", desc="Number of the pod with ready state"), AGE, CONTAINERS, IMAGES,
    ], _statefulset_cells),
    ("", "endpoints"): ([
        NAME, _c("Endpoints", desc=(_CORE + "Endpoints", "subsets")), AGE,
    ], _endpoints_cells),
    ("", "nodes"): ([
        NAME,
        _c("Status", desc="The status of the node"),
        _c("Roles", desc="The roles of the node"),
        AGE,
        _c("Version", desc=(_CORE + "NodeSystemInfo", "kubeletVersion")),
        _c("Internal-IP", desc=(_CORE + "NodeStatus", "addresses"), priority=1),
        _c("External-IP", desc=(_CORE + "NodeStatus", "addresses"), priority=1),
        _c("OS-Image", desc=(_CORE + "NodeSystemInfo", "osImage"), priority=1),
        _c("Kernel-Version", desc=(_CORE + "NodeSystemInfo", "kernelVersion"), priority=1),
        _c("Container-Runtime", desc=(_CORE + "NodeSystemInfo", "containerRuntimeVersion"),
           priority=1),
    ], _node_cells),
    ("", "events"): (_EVENT_COLUMNS, _event_cells),
    ("events.k8s.io", "events"): (_EVENT_COLUMNS, _event_cells),
    ("", "namespaces"): ([
        NAME, _c("Status", desc="The status of the namespace"), AGE,
    ], _namespace_cells),
    ("", "secrets"): ([
        NAME, _c("Type", desc=(_CORE + "Secret", "type")),
        _c("Data", desc=(_CORE + "Secret", "data")), AGE,
    ], _secret_cells),
    ("", "serviceaccounts"): ([
        NAME, _c("Secrets", desc=(_CORE + "ServiceAccount", "secrets")), AGE,
    ], _service_account_cells),
    ("", "persistentvolumes"): ([
        NAME,
        _c("Capacity", desc=(_CORE + "PersistentVolumeSpec", "capacity")),
        _c("Access Modes", desc=(_CORE + "PersistentVolumeSpec", "accessModes")),
        _c("Reclaim Policy", desc=(_CORE + "PersistentVolumeSpec",
                                   "persistentVolumeReclaimPolicy")),
        _c("Status", desc=(_CORE + "PersistentVolumeStatus", "phase")),
        _c("Claim", desc=(_CORE + "PersistentVolumeSpec", "claimRef")),
        _c("StorageClass", desc="StorageClass of the pv"),
        _c("VolumeAttributesClass", desc="VolumeAttributesClass of the pv"),
        _c("Reason", desc=(_CORE + "PersistentVolumeStatus", "reason")),
        AGE,
        _c("VolumeMode", desc=(_CORE + "PersistentVolumeSpec", "volumeMode"), priority=1),
    ], _pv_cells),
    ("", "persistentvolumeclaims"): ([
        NAME,
        _c("Status", desc=(_CORE + "PersistentVolumeClaimStatus", "phase")),
        _c("Volume", desc=(_CORE + "PersistentVolumeClaimSpec", "volumeName")),
        _c("Capacity", desc=(_CORE + "PersistentVolumeClaimStatus", "capacity")),
        _c("Access Modes", desc=(_CORE + "PersistentVolumeClaimStatus", "accessModes")),
        _c("StorageClass", desc="StorageClass of the pvc"),
        _c("VolumeAttributesClass", desc="VolumeAttributesClass of the pvc"),
        AGE,
        _c("VolumeMode", desc=(_CORE + "PersistentVolumeClaimSpec", "volumeMode"), priority=1),
    ], _pvc_cells),
    ("apps", "deployments"): ([
        NAME,
        _c("Ready", desc="Number of the pod with ready state"),
        _c("Up-to-date", desc=(_APPS + "DeploymentStatus", "updatedReplicas")),
        _c("Available", desc=(_APPS + "DeploymentStatus", "availableReplicas")),
        AGE, CONTAINERS, IMAGES, _selector_col(_APPS + "DeploymentSpec"),
    ], _deployment_cells),
    ("autoscaling", "horizontalpodautoscalers"): (_HPA_COLUMNS, _hpa_cells),
    # The scale subresource of any built-in kind (``kubectl get --subresource=scale``).
    SCALE: ([
        _c("Name", desc=(_META, "name")),  # upstream gives this Name no "name" format
        _c("Desired", "integer", desc=("io.k8s.api.autoscaling.v1.ScaleSpec", "replicas")),
        _c("Available", "integer", desc=("io.k8s.api.autoscaling.v1.ScaleStatus", "replicas")),
        AGE,
    ], _scale_cells),
    ("", "configmaps"): ([
        NAME, _c("Data", desc=(_CORE + "ConfigMap", "data")), AGE,
    ], _configmap_cells),
    ("networking.k8s.io", "networkpolicies"): ([
        NAME, _c("Pod-Selector", desc=("io.k8s.api.networking.v1.NetworkPolicySpec",
                                       "podSelector")), AGE,
    ], _network_policy_cells),
    ("rbac.authorization.k8s.io", "rolebindings"): (_RB_COLUMNS, _role_binding_cells),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): (_CRB_COLUMNS, _role_binding_cells),
    ("coordination.k8s.io", "leases"): ([
        NAME, _c("Holder", desc=("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")), AGE,
    ], _lease_cells),
    ("storage.k8s.io", "storageclasses"): ([
        NAME,
        _c("Provisioner", desc=(_STORAGE + "StorageClass", "provisioner")),
        _c("ReclaimPolicy", desc=(_STORAGE + "StorageClass", "reclaimPolicy")),
        _c("VolumeBindingMode", desc=(_STORAGE + "StorageClass", "volumeBindingMode")),
        _c("AllowVolumeExpansion", desc=(_STORAGE + "StorageClass", "allowVolumeExpansion")),
        AGE,
    ], _storage_class_cells),
    ("apps", "controllerrevisions"): ([
        NAME,
        _c("Controller", desc="Controller of the object"),
        _c("Revision", desc=(_APPS + "ControllerRevision", "revision")),
        AGE,
    ], _controller_revision_cells),
    ("", "resourcequotas"): ([
        NAME,
        _c("Request", desc="Request represents a minimum amount of cpu/memory that a container "
                           "may consume."),
        _c("Limit", desc="Limits control the maximum amount of cpu/memory that a container may "
                         "use independent of contention on the node."),
        AGE,
    ], _resource_quota_cells),
    ("scheduling.k8s.io", "priorityclasses"): ([
        NAME,
        _c("Value", "integer", desc=("io.k8s.api.scheduling.v1.PriorityClass", "value")),
        _c("Global-Default", "boolean", desc=("io.k8s.api.scheduling.v1.PriorityClass",
                                              "globalDefault")),
        AGE,
        _c("PreemptionPolicy", desc=("io.k8s.api.scheduling.v1.PriorityClass",
                                     "preemptionPolicy")),
    ], _priority_class_cells),
    ("", "componentstatuses"): ([
        NAME,
        _c("Status", desc="Status of the condition for a component."),
        _c("Message", desc="Message about the condition for a component."),
        _c("Error", desc="Condition error code for a component."),
    ], _component_status_cells),
    ("apiregistration.k8s.io", "apiservices"): ([
        NAME,
        _c("Service", desc="The reference to the service that hosts this API endpoint."),
        _c("Available", desc="Whether this service is available."),
        AGE,
    ], _api_service_cells),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"): ([
        NAME, _c("PriorityLevel", desc=(_FC + "PriorityLevelConfigurationReference", "name")),
        _c("MatchingPrecedence", "string", desc=(_FC + "FlowSchemaSpec", "matchingPrecedence")),
        _c("DistinguisherMethod", desc=(_FC + "FlowSchemaSpec", "distinguisherMethod")), AGE,
        _c("MissingPL", desc="indicates whether the priority level referenced by this flow "
                             "schema is missing"),
    ], _flow_schema_cells),
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"): ([
        NAME, _c("Type", desc=(_FC + "PriorityLevelConfigurationSpec", "type")),
        _c("NominalConcurrencyShares", "string",
           desc=(_FC + "LimitedPriorityLevelConfiguration", "nominalConcurrencyShares")),
        _c("Queues", "string", desc=(_FC + "QueuingConfiguration", "queues")),
        _c("HandSize", "string", desc=(_FC + "QueuingConfiguration", "handSize")),
        _c("QueueLengthLimit", "string", desc=(_FC + "QueuingConfiguration", "queueLengthLimit")),
        AGE,
    ], _priority_level_cells),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): ([
        NAME, _c("Webhooks", "integer", desc=("io.k8s.api.admissionregistration.v1."
                                              "MutatingWebhookConfiguration", "webhooks")), AGE,
    ], _webhook_configuration_cells),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): ([
        NAME, _c("Webhooks", "integer", desc=("io.k8s.api.admissionregistration.v1."
                                              "ValidatingWebhookConfiguration", "webhooks")), AGE,
    ], _webhook_configuration_cells),
    ("node.k8s.io", "runtimeclasses"): ([
        NAME,
        _c("Handler", desc=("io.k8s.api.node.v1.RuntimeClass", "handler")),
        AGE,
    ], _runtime_class_cells),
    ("certificates.k8s.io", "certificatesigningrequests"): ([
        NAME, AGE,
        _c("SignerName", desc=(_CERTS + "CertificateSigningRequestSpec", "signerName")),
        _c("Requestor", desc=(_CERTS + "CertificateSigningRequestSpec", "request")),
        _c("RequestedDuration", desc=(_CERTS + "CertificateSigningRequestSpec",
                                      "expirationSeconds")),
        _c("Condition", desc=(_CERTS + "CertificateSigningRequestStatus", "conditions")),
    ], _csr_cells),
    ("storage.k8s.io", "volumeattachments"): ([
        NAME,
        _c("Attacher", fmt="name", desc=(_STORAGE + "VolumeAttachmentSpec", "attacher")),
        _c("PV", desc=(_STORAGE + "VolumeAttachmentSource", "persistentVolumeName")),
        _c("Node", desc=(_STORAGE + "VolumeAttachmentSpec", "nodeName")),
        _c("Attached", "boolean", desc=(_STORAGE + "VolumeAttachmentStatus", "attached")),
        AGE,
    ], _volume_attachment_cells),
    ("discovery.k8s.io", "endpointslices"): ([
        NAME,
        _c("AddressType", desc=("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
        _c("Ports", desc=("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
        _c("Endpoints", desc=("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")),
        AGE,
    ], _endpointslice_cells),
    ("storage.k8s.io", "csinodes"): ([
        NAME,
        _c("Drivers", "integer",
           desc="Drivers indicates the number of CSI drivers registered on the node"),
        AGE,
    ], _csi_node_cells),
    ("storage.k8s.io", "csidrivers"): ([
        NAME,
        _c("AttachRequired", "boolean", desc=(_STORAGE + "CSIDriverSpec", "attachRequired")),
        _c("PodInfoOnMount", "boolean", desc=(_STORAGE + "CSIDriverSpec", "podInfoOnMount")),
        _c("StorageCapacity", "boolean", desc=(_STORAGE + "CSIDriverSpec", "storageCapacity")),
        _c("TokenRequests", desc=(_STORAGE + "CSIDriverSpec", "tokenRequests")),
        _c("RequiresRepublish", "boolean", desc=(_STORAGE + "CSIDriverSpec",
                                                 "requiresRepublish")),
        _c("Modes", desc=(_STORAGE + "CSIDriverSpec", "volumeLifecycleModes")),
        AGE,
    ], _csi_driver_cells),
    ("storage.k8s.io", "csistoragecapacities"): ([
        NAME,
        _c("StorageClassName", desc=(_STORAGE + "CSIStorageCapacity", "storageClassName")),
        _c("Capacity", desc=(_STORAGE + "CSIStorageCapacity", "capacity")),
    ], _csi_capacity_cells),
}

_DEFAULT_COLUMNS: list[Column] = [NAME, _c("Created At", "date",
                                           desc=(_META, "creationTimestamp"))]


def _created_at(obj: Obj, now: float) -> list[Any]:
    meta = obj.get("metadata") or {}
    ts = meta.get("creationTimestamp")
    if not ts:
        created = "0001-01-01T00:00:00Z"
    elif isinstance(ts, str) and ts.endswith("Z") and "." not in ts:
        created = ts
    else:
        t = _epoch(ts)
        created = (datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                   if t is not None else str(ts))
    return [meta.get("name", ""), created]


def _printer(group: str, resource: str) -> tuple[list[Column], RowFn]:
    return PRINTERS.get((group, resource)) or (_DEFAULT_COLUMNS, _created_at)


@functools.cache
def _column_definitions(group: str, resource: str) -> tuple[dict[str, Any], ...]:
    cols, _ = _printer(group, resource)
    out = []
    for name, type_, fmt, desc, priority in cols:
        text = _doc(*desc) if isinstance(desc, tuple) else desc
        out.append({"name": name, "type": type_, "format": fmt, "description": text,
                    "priority": priority})
    return tuple(out)


def column_definitions(group: str, resource: str) -> list[dict[str, Any]]:
    """The Table columnDefinitions kube-apiserver returns for a resource."""
    return list(_column_definitions(group, resource))


def _now_epoch(now: datetime | float | None) -> float:
    if now is None:
        return datetime.now(UTC).timestamp()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()
    return float(now)


def row_cells(group: str, resource: str, obj: Obj, now: datetime | float | None = None
              ) -> list[Any]:
    """One object's cells, in column order (all columns, wide)."""
    return _printer(group, resource)[1](obj, _now_epoch(now))


def partial_object_metadata(obj: Obj) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def _list_meta(list_meta: Mapping[str, Any] | None) -> dict[str, Any]:
    # ListMeta field order and omitempty as upstream serializes it.
    lm = list_meta or {}
    out: dict[str, Any] = {}
    for k in ("selfLink", "resourceVersion", "continue", "remainingItemCount"):
        v = lm.get(k)
        if v not in (None, ""):
            out[k] = v
    return out


def partial_object_metadata_list(objs: Iterable[Obj], list_meta: Mapping[str, Any] | None = None
                                 ) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": _list_meta(list_meta),
            "items": [partial_object_metadata(o) for o in objs]}


INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


def table(group: str, resource: str, objs: Iterable[Obj], now: datetime | float | None = None,
          include_object: str = "Metadata", list_meta: Mapping[str, Any] | None = None,
          *, headers: bool = True) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of ``objs``.

    include_object: "Metadata" (default, also for ""), "Object" or "None",
    as the ``includeObject`` query parameter. ``list_meta`` is the LIST's
    metadata (for a single GET pass {"resourceVersion": <object's>}).
    ``headers=False`` leaves out the column definitions (TableOptions.noHeaders,
    used for watch events after the first). Raises ValueError with upstream's
    message for an unknown include_object.
    """
    if include_object == "":
        include_object = "Metadata"
    if include_object not in INCLUDE_OBJECT_VALUES:
        raise ValueError(f'unrecognized includeObject value: "{include_object}"')
    fn = _printer(group, resource)[1]
    t = _now_epoch(now)
    is_pod = fn is _pod_cells
    rows: list[dict[str, Any]] = []
    append = rows.append
    for obj in objs:
        row: dict[str, Any] = {"cells": fn(obj, t)}
        if is_pod:
            conds = _pod_conditions(obj)
            if conds is not None:
                row["conditions"] = conds
        if include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata") or {}}
        elif include_object == "Object":
            row["object"] = obj
        else:
            row["object"] = None
        append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": _list_meta(list_meta),
            "columnDefinitions": list(_column_definitions(group, resource)) if headers else None,
            "rows": rows}
