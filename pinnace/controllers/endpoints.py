"""The endpoints controller: for every Service with a selector, an Endpoints
object of the same name listing the IPs of the pods it selects, ready ones
under ``addresses`` and the rest under ``notReadyAddresses``, grouped by the
ports they serve (upstream pkg/controller/endpoint). Services without a
selector are left to whoever manages their Endpoints."""

from __future__ import annotations

from typing import Any

from pinnace.api import selectors
from pinnace.client import ApiError, key_of, split_key

from . import pods as podutil
from .base import Context, Controller

Obj = dict[str, Any]

HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ADDRESSES = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


# -- facts shared with the endpointslice controller -----------------------------


def service_selector(svc: Obj) -> selectors.LabelSelector | None:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return None
    return selectors.label_selector_from_dict(sel, plain_map=True)


def is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def pod_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Upstream's ShouldPodBeInEndpoints: it has an IP and can still serve."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed") or not status.get("podIP"):
        return False
    if not include_terminating and pod["metadata"].get("deletionTimestamp"):
        return False
    return True


def resolve_port(pod: Obj, svc_port: Obj) -> int | None:
    """The container port a Service port sends to on this pod (None: not served)."""
    target = svc_port.get("targetPort")
    if target is None or target == "":
        return int(svc_port["port"])
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    protocol = svc_port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def endpoint_ports(pod: Obj, svc: Obj) -> list[Obj] | None:
    """The pod's resolved ports for the Service, or None when it serves none of them."""
    ports = (svc.get("spec") or {}).get("ports") or []
    if not ports:
        return [] if is_headless(svc) else None
    out: list[Obj] = []
    for sp in ports:
        n = resolve_port(pod, sp)
        if n is None:
            continue
        ep: Obj = {"port": n, "protocol": sp.get("protocol", "TCP")}
        if sp.get("name"):
            ep["name"] = sp["name"]
        if sp.get("appProtocol"):
            ep["appProtocol"] = sp["appProtocol"]
        out.append(ep)
    return out or None


def target_ref(pod: Obj) -> Obj:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
            "uid": meta["uid"]}


def pod_hostname(pod: Obj, svc: Obj) -> str | None:
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == svc["metadata"]["name"]:
        return str(spec["hostname"])
    return None


def selected_pods(pods: list[Obj], svc: Obj) -> list[Obj]:
    sel = service_selector(svc)
    if sel is None:
        return []
    return [p for p in pods if sel.matches(p["metadata"].get("labels") or {})]


def managed_labels(svc: Obj) -> dict[str, str]:
    labels = dict(svc["metadata"].get("labels") or {})
    if is_headless(svc):
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def build_subsets(svc: Obj, pods: list[Obj]) -> tuple[list[Obj], bool]:
    """Endpoints subsets (grouped by identical port sets, sorted) and whether
    the addresses were truncated at the 1000 capacity limit."""
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[Any, ...], ...], tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not pod_in_endpoints(pod, publish):
            continue
        ports = endpoint_ports(pod, svc)
        if ports is None:
            continue
        addr: Obj = {"ip": pod["status"]["podIP"]}
        host = pod_hostname(pod, svc)
        if host:
            addr["hostname"] = host
        if (pod.get("spec") or {}).get("nodeName"):
            addr["nodeName"] = pod["spec"]["nodeName"]
        addr["targetRef"] = target_ref(pod)
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        ready, not_ready, port_list = groups.setdefault(key, ([], [], ports))
        (ready if publish or podutil.is_ready(pod) else not_ready).append(addr)
    subsets: list[Obj] = []
    total = 0
    truncated = False
    for key in sorted(groups):
        ready, not_ready, ports = groups[key]
        sub: Obj = {}
        ready.sort(key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        not_ready.sort(key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        room = MAX_ADDRESSES - total
        if len(ready) + len(not_ready) > room:
            truncated = True
            ready = ready[:room]
            not_ready = not_ready[:max(room - len(ready), 0)]
        total += len(ready) + len(not_ready)
        if ready:
            sub["addresses"] = ready
        if not_ready:
            sub["notReadyAddresses"] = not_ready
        if not sub:
            continue
        if ports:
            sub["ports"] = sorted(ports, key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(sub)
    return subsets, truncated


class ServicePodTracker(Controller):
    """Shared wiring: Services and pods informers, a pod change enqueues every
    Service in its namespace whose selector matches it (before or after)."""

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.services = ctx.informers.informer("v1", "services")
        self.pods = ctx.informers.informer("v1", "pods")

    def setup(self) -> None:
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                  self.enqueue)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_updated(old, new),
                              self._pod_changed)

    def _services_for(self, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        out = []
        for svc in self.services.objects(pod["metadata"].get("namespace")):
            sel = service_selector(svc)
            if sel is not None and sel.matches(labels):
                out.append(key_of(svc))
        return out

    def _pod_changed(self, pod: Obj) -> None:
        for key in self._services_for(pod):
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old.get("metadata", {}).get("resourceVersion") == \
                new.get("metadata", {}).get("resourceVersion"):
            return
        for key in set(self._services_for(old)) | set(self._services_for(new)):
            self.queue.add(key)


class EndpointsController(ServicePodTracker):
    name = "endpoints"
    event_source = "endpoint-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.endpoints = ctx.informers.informer("v1", "endpoints")
        self.ep_api = self.client.resource("v1", "endpoints")

    def setup(self) -> None:
        super().setup()
        # Someone changing or deleting an Endpoints we manage: put it back.
        self.endpoints.add_handler(None, lambda old, new: self.enqueue(new), self.enqueue)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            if self.endpoints.get(key) is not None:
                try:
                    await self.ep_api.delete(name, ns)
                except ApiError as e:
                    if not e.not_found:
                        raise
            return
        if service_selector(svc) is None:
            return
        subsets, truncated = build_subsets(svc, selected_pods(self.pods.objects(ns), svc))
        labels = managed_labels(svc)
        current = self.endpoints.get(key)
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        annotations.pop("endpoints.kubernetes.io/last-change-trigger-time", None)
        if truncated:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        if current is not None and (current.get("subsets") or []) == subsets and \
                (current["metadata"].get("labels") or {}) == labels and \
                (current["metadata"].get("annotations") or {}) == annotations:
            return
        body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": name, "namespace": ns, "labels": labels},
                     "subsets": subsets}
        if annotations:
            body["metadata"]["annotations"] = annotations
        try:
            if current is None:
                try:
                    await self.ep_api.create(body, ns)
                    return
                except ApiError as e:
                    if not e.conflict and e.status.get("reason") != "AlreadyExists":
                        raise
                    current = await self.ep_api.get(name, ns)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.ep_api.replace(body, ns)
        except ApiError as e:
            if e.not_found and self.services.get(key) is None:
                return
            raise


CONTROLLERS = {"endpoints": EndpointsController}
