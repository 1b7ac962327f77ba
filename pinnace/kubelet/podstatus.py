"""Pod status as a kubelet reports it: the phase, the five pod conditions,
one status per container, and the addresses.

Pure functions on JSON dicts, shared by the simulated runtime and (later)
the real kubelet: the caller says what happened (started at, exited with),
these functions say how the API object must look. Conditions keep their
lastTransitionTime while their status does not change, as upstream's
status manager does; condition types the kubelet does not own (readiness
gates, DisruptionTarget, ...) are kept as they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

Obj = dict[str, Any]

# The kubelet owns these (in this order, as `kubectl get pod -o yaml` shows them).
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                      "PodScheduled")


def rfc3339(t: float | dt.datetime | None = None) -> str:
    if t is None:
        t = dt.datetime.now(dt.UTC)
    elif isinstance(t, (int, float)):
        t = dt.datetime.fromtimestamp(t, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_image(ref: str) -> str:
    """The fully qualified reference containerd reports: nginx →
    docker.io/library/nginx:latest."""
    name, at, digest = ref.partition("@")
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if slash else "library/" + name)
    if not at and ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return f"{name}@{digest}" if at else name


def image_id(ref: str) -> str:
    """repo@sha256:… — stable per reference, so the same image always has one id."""
    full = normalize_image(ref)
    if "@" in full:
        return full
    repo = full.rpartition(":")[0] if ":" in full.rpartition("/")[2] else full
    return f"{repo}@sha256:{hashlib.sha256(full.encode()).hexdigest()}"


def container_id(pod_uid: str, name: str, restarts: int = 0, runtime: str = "sim") -> str:
    digest = hashlib.sha256(f"{pod_uid}/{name}/{restarts}".encode()).hexdigest()
    return f"{runtime}://{digest}"


def _condition(type_: str, status: bool, now: str, old: dict[str, Obj], generation: Any,
               reason: str | None = None, message: str | None = None) -> Obj:
    value = "True" if status else "False"
    prev = old.get(type_)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == value else None
    c: Obj = {"type": type_, "status": value, "lastProbeTime": None,
              "lastTransitionTime": since or now}
    if generation is not None:
        c["observedGeneration"] = generation
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _conditions(pod: Obj, now: str, *, sandbox: bool, initialized: bool, containers_ready: bool,
                reason: str | None = None, message: str | None = None) -> list[Obj]:
    status = pod.get("status") or {}
    old: dict[str, Obj] = {str(c.get("type")): c for c in status.get("conditions") or []
                           if isinstance(c, dict)}
    gen = (pod.get("metadata") or {}).get("generation")
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    missing = [g for g in gates if (old.get(g) or {}).get("status") != "True"]
    ready_reason, ready_msg = reason, message
    ready = containers_ready and not missing
    if containers_ready and missing:
        ready_reason = "ReadinessGatesNotReady"
        g = missing[0]
        ready_msg = (f"corresponding condition of pod readiness gate \"{g}\" does not exist."
                     if g not in old else
                     f"the status of pod readiness gate \"{g}\" is not \"True\", "
                     f"but {old[g].get('status')}")
    out = [
        _condition("PodReadyToStartContainers", sandbox, now, old, gen),
        _condition("Initialized", initialized, now, old, gen),
        _condition("Ready", ready, now, old, gen, ready_reason, ready_msg),
        _condition("ContainersReady", containers_ready, now, old, gen, reason, message),
    ]
    sched = old.get("PodScheduled")
    # A bound pod is scheduled, whatever an earlier scheduling attempt wrote.
    out.append(sched if sched and sched.get("status") == "True"
               else _condition("PodScheduled", True, now, old, gen))
    out.extend(c for t, c in old.items() if t not in KUBELET_CONDITIONS)
    return out


def volume_mounts(container: Obj, recursive_read_only: bool) -> list[Obj]:
    """A created container's volume mounts as its status reports them
    (1.33+): a read-only one with its recursive read-only mode as resolved,
    Enabled only where the runtime has such mounts and the spec asks for
    them (Enabled, or IfPossible)."""
    out = []
    for m in container.get("volumeMounts") or []:
        vm: Obj = {"name": m.get("name"), "mountPath": m.get("mountPath")}
        if m.get("readOnly"):
            vm["readOnly"] = True
            vm["recursiveReadOnly"] = "Enabled" if recursive_read_only and m.get(
                "recursiveReadOnly") in ("Enabled", "IfPossible") else "Disabled"
        out.append(vm)
    return out


def container_status(pod_uid: str, c: Obj, state: Obj, *, ready: bool, started: bool,
                      runtime: str, restarts: int = 0, last_state: Obj | None = None) -> Obj:
    image = c.get("image") or ""
    st: Obj = {"name": c.get("name"), "state": state, "lastState": last_state or {},
               "ready": ready, "restartCount": restarts,
               "image": normalize_image(image) if image else "",
               "imageID": image_id(image) if image else "",
               "containerID": container_id(pod_uid, c.get("name") or "", restarts, runtime),
               "started": started}
    if c.get("resources"):
        st["resources"] = {k: v for k, v in c["resources"].items()
                           if k in ("requests", "limits") and v}
    mounts = volume_mounts(c, recursive_read_only=True)
    if mounts:
        st["volumeMounts"] = mounts
    return st


def _addresses(pod: Obj, host_ip: str, pod_ip: str) -> Obj:
    return {"hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}


def _base(pod: Obj, phase: str, now: str, start_time: str | None) -> Obj:
    status = pod.get("status") or {}
    out: Obj = {"phase": phase, "startTime": status.get("startTime") or start_time or now}
    if status.get("qosClass"):
        out["qosClass"] = status["qosClass"]
    gen = (pod.get("metadata") or {}).get("generation")
    if gen is not None:
        out["observedGeneration"] = gen
    return out


def running_status(pod: Obj, *, host_ip: str, pod_ip: str, now: str | None = None,
                   started_at: str | None = None, runtime: str = "sim") -> Obj:
    """The status of a pod whose init containers have completed and whose
    containers all run (and, with no probes, are ready)."""
    now = now or rfc3339()
    # A repeated report keeps the times of the first one.
    started = started_at or (pod.get("status") or {}).get("startTime") or now
    spec = pod.get("spec") or {}
    uid = (pod.get("metadata") or {}).get("uid") or ""
    st = _base(pod, "Running", now, None)
    st["conditions"] = _conditions(pod, now, sandbox=True, initialized=True,
                                   containers_ready=True)
    st.update(_addresses(pod, host_ip, pod_ip))
    inits = completed_inits(pod, started, runtime)
    if inits:
        st["initContainerStatuses"] = inits
    st["containerStatuses"] = [
        container_status(uid, c, {"running": {"startedAt": started}}, ready=True, started=True,
                          runtime=runtime)
        for c in spec.get("containers") or []]
    return st


def completed_inits(pod: Obj, started: str, runtime: str = "sim") -> list[Obj]:
    """Init container statuses once they have all run: each exited 0 at
    ``started``; sidecars (restartPolicy Always) keep running."""
    uid = (pod.get("metadata") or {}).get("uid") or ""
    inits = []
    for c in (pod.get("spec") or {}).get("initContainers") or []:
        if c.get("restartPolicy") == "Always":
            inits.append(container_status(uid, c, {"running": {"startedAt": started}},
                                          ready=True, started=True, runtime=runtime))
        else:
            cid = container_id(uid, c.get("name") or "", 0, runtime)
            inits.append(container_status(uid, c, {"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": started,
                "finishedAt": started, "containerID": cid}}, ready=True, started=False,
                runtime=runtime))
    return inits


def terminated_status(pod: Obj, *, exit_code: int = 0, host_ip: str, pod_ip: str,
                      now: str | None = None, started_at: str | None = None,
                      runtime: str = "sim") -> Obj:
    """The status once every container has exited: Succeeded when all exited
    0, else Failed (for restartPolicy Never; OnFailure restarts instead)."""
    now = now or rfc3339()
    status = pod.get("status") or {}
    started = started_at or status.get("startTime") or now
    spec = pod.get("spec") or {}
    uid = (pod.get("metadata") or {}).get("uid") or ""
    ok = exit_code == 0
    st = _base(pod, "Succeeded" if ok else "Failed", now, started)
    # Once the pod is done the sandbox is torn down and nothing is ready.
    names = " ".join(c.get("name") or "" for c in spec.get("containers") or [])
    st["conditions"] = _conditions(
        pod, now, sandbox=False, initialized=True, containers_ready=False,
        reason="PodCompleted" if ok else "ContainersNotReady",
        message=None if ok else f"containers with unready status: [{names}]")
    st.update(_addresses(pod, host_ip, pod_ip))
    statuses = []
    for c in spec.get("containers") or []:
        cid = container_id(uid, c.get("name") or "", 0, runtime)
        term = {"exitCode": exit_code, "reason": "Completed" if ok else "Error",
                "startedAt": started, "finishedAt": now, "containerID": cid}
        statuses.append(container_status(uid, c, {"terminated": term}, ready=False,
                                          started=False, runtime=runtime))
    st["containerStatuses"] = statuses
    if spec.get("initContainers"):
        st["initContainerStatuses"] = [
            container_status(uid, c, {"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": started,
                "finishedAt": started if c.get("restartPolicy") != "Always" else now,
                "containerID": container_id(uid, c.get("name") or "", 0, runtime)}},
                ready=False, started=False, runtime=runtime)
            for c in spec["initContainers"]]
    return st


__all__ = ["KUBELET_CONDITIONS", "completed_inits", "container_id", "container_status",
           "image_id", "normalize_image", "pod_status", "rfc3339", "running_status",
           "terminated_status"]


def pod_status(pod: Obj, *, phase: str, host_ip: str, pod_ip: str, sandbox: bool,
               init_statuses: list[Obj], statuses: list[Obj], start_time: str | None,
               reason: str | None = None, message: str | None = None,
               now: str | None = None, ephemeral_statuses: list[Obj] | None = None) -> Obj:
    """A node's report from each container's status (the caller's); the
    conditions follow from them as the kubelet derives them."""
    now = now or rfc3339()
    spec = pod.get("spec") or {}
    pending_inits = [s["name"] for s, c in zip(init_statuses, spec.get("initContainers") or [])
                     if not _init_done(s, c)]
    unready = [s["name"] for s in statuses if not s.get("ready")]
    # Sidecars count for readiness too (they are ready when running and probed ready).
    unready += [s["name"] for s, c in zip(init_statuses, spec.get("initContainers") or [])
                if c.get("restartPolicy") == "Always" and not s.get("ready")]
    initialized = not pending_inits
    cr_reason = cr_msg = None
    if unready:
        cr_reason = "PodCompleted" if phase == "Succeeded" else "ContainersNotReady"
        cr_msg = None if phase == "Succeeded" else \
            f"containers with unready status: [{' '.join(unready)}]"
    st = _base(pod, phase, now, start_time)
    conds = _conditions(pod, now, sandbox=sandbox, initialized=initialized,
                        containers_ready=not unready, reason=cr_reason, message=cr_msg)
    if not initialized:
        for c in conds:
            if c["type"] == "Initialized":
                c["reason"] = "ContainersNotInitialized"
                c["message"] = f"containers with incomplete status: [{' '.join(pending_inits)}]"
    elif phase == "Succeeded":
        for c in conds:
            if c["type"] == "Initialized":
                c["reason"] = "PodCompleted"
    st["conditions"] = conds
    if pod_ip:
        st.update(_addresses(pod, host_ip, pod_ip))
    elif host_ip:
        st.update({"hostIP": host_ip, "hostIPs": [{"ip": host_ip}]})
    if init_statuses:
        st["initContainerStatuses"] = init_statuses
    st["containerStatuses"] = statuses
    if ephemeral_statuses:
        st["ephemeralContainerStatuses"] = ephemeral_statuses
    if reason:
        st["reason"] = reason
    if message:
        st["message"] = message
    return st


def _init_done(status: Obj, container: Obj) -> bool:
    if container.get("restartPolicy") == "Always":
        return bool(status.get("started"))
    term = (status.get("state") or {}).get("terminated") or {}
    return bool(term) and term.get("exitCode") == 0
