"""The endpointslice controller: for every Service with a selector, the
EndpointSlices (discovery.k8s.io/v1) that list its pods, at most 100
endpoints per slice, one set of slices per address family and per distinct
set of resolved ports; a Service with no endpoints keeps one empty
placeholder slice (upstream pkg/controller/endpointslice)."""

from __future__ import annotations

import time
from typing import Any

from pinnace.client import ApiError, split_key

from . import pods as podutil
from .base import Context, owner_reference
from .endpoints import (
    ServicePodTracker,
    endpoint_ports,
    managed_labels,
    pod_hostname,
    pod_in_endpoints,
    selected_pods,
    service_selector,
    target_ref,
)

Obj = dict[str, Any]

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_PER_SLICE = 100
PortKey = tuple[tuple[Any, ...], ...]


def family_of(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def pod_ip(pod: Obj, family: str) -> str | None:
    status = pod.get("status") or {}
    ips = [i.get("ip") for i in status.get("podIPs") or [] if i.get("ip")] or \
        [status.get("podIP")]
    for ip in ips:
        if ip and family_of(ip) == family:
            return str(ip)
    return None


def port_key(ports: list[Obj] | None) -> PortKey:
    return tuple(sorted((p.get("name", ""), p.get("port"), p.get("protocol", "TCP"),
                         p.get("appProtocol", "")) for p in ports or []))


def build_endpoint(pod: Obj, svc: Obj, ip: str) -> Obj:
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    serving = publish or podutil.is_ready(pod)
    ep: Obj = {"addresses": [ip],
               "conditions": {"ready": publish or (serving and not terminating),
                              "serving": serving, "terminating": terminating}}
    host = pod_hostname(pod, svc)
    if host:
        ep["hostname"] = host
    ep["targetRef"] = target_ref(pod)
    if (pod.get("spec") or {}).get("nodeName"):
        ep["nodeName"] = pod["spec"]["nodeName"]
    return ep


def desired_groups(svc: Obj, pods: list[Obj], family: str) -> dict[PortKey, tuple[list[Obj],
                                                                                   list[Obj]]]:
    """port key -> (ports, endpoints sorted by address) for one address family."""
    groups: dict[PortKey, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not pod_in_endpoints(pod, include_terminating=True):
            continue
        ip = pod_ip(pod, family)
        if ip is None:
            continue
        ports = endpoint_ports(pod, svc)
        if ports is None:
            continue
        ports = sorted(ports, key=lambda p: (p.get("name", ""), p["port"]))
        groups.setdefault(port_key(ports), (ports, []))[1].append(build_endpoint(pod, svc, ip))
    for _, eps in groups.values():
        eps.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["uid"]))
    return groups


def service_families(svc: Obj) -> list[str]:
    spec = svc.get("spec") or {}
    fams = [f for f in spec.get("ipFamilies") or [] if f in ("IPv4", "IPv6")]
    return fams or ["IPv4"]


class EndpointSliceController(ServicePodTracker):
    name = "endpointslice"
    event_source = "endpoint-slice-controller"
    workers = 4

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.slices = ctx.informers.informer("discovery.k8s.io/v1", "endpointslices")
        self.slice_api = self.client.resource("discovery.k8s.io/v1", "endpointslices")
        self.max_per_slice = int(ctx.options.get("max_endpoints_per_slice", MAX_PER_SLICE))
        # Slices we wrote but the informer has not shown yet: acting before it
        # does would create duplicates.
        self._created: dict[str, dict[str, float]] = {}
        self._deleted: dict[str, dict[str, float]] = {}

    def setup(self) -> None:
        super().setup()
        self.slices.add_index("endpointslice-service", _service_index)
        self.slices.add_handler(self._slice_changed, lambda old, new: self._slice_changed(new),
                                self._slice_changed)

    def _slice_changed(self, sl: Obj) -> None:
        labels = sl["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME):
            self.queue.add(f"{sl['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    def _existing(self, key: str) -> list[Obj] | None:
        """Our slices for the Service, or None while our own writes are not cached yet."""
        now = time.monotonic()
        have = self.slices.by_index("endpointslice-service", key)
        names = {s["metadata"]["name"] for s in have}
        created = self._created.get(key, {})
        for n, t in list(created.items()):
            if n in names or now - t > 30:
                del created[n]
        deleted = self._deleted.get(key, {})
        for n, t in list(deleted.items()):
            if n not in names or now - t > 30:
                del deleted[n]
        if created:
            return None
        return [s for s in have if s["metadata"]["name"] not in deleted]

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        existing = self._existing(key)
        if existing is None:
            self.enqueue_after(key, 0.2)
            return
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            for sl in existing:
                await self._delete(key, sl)
            return
        if service_selector(svc) is None:
            return
        pods = selected_pods(self.pods.objects(ns), svc)
        families = service_families(svc)
        for family in families:
            await self._reconcile_family(key, svc, pods, family,
                                         [s for s in existing if s.get("addressType") == family])
        for sl in existing:
            if sl.get("addressType") not in families:
                await self._delete(key, sl)

    async def _reconcile_family(self, key: str, svc: Obj, pods: list[Obj], family: str,
                                existing: list[Obj]) -> None:
        groups = desired_groups(svc, pods, family)
        placeholder = not groups
        if placeholder:
            groups = {(): ([], [])}
        by_key: dict[PortKey, list[Obj]] = {}
        for sl in sorted(existing, key=lambda s: s["metadata"]["name"]):
            by_key.setdefault(port_key(sl.get("ports")), []).append(sl)
        labels = managed_labels(svc)
        labels[SERVICE_NAME] = svc["metadata"]["name"]
        labels[MANAGED_BY] = CONTROLLER_NAME
        for pk, (ports, eps) in groups.items():
            chunks = [eps[i:i + self.max_per_slice]
                      for i in range(0, len(eps), self.max_per_slice)] or [[]]
            olds = by_key.pop(pk, [])
            # Fill existing slices first so unchanged endpoints stay where they are.
            for i, chunk in enumerate(chunks):
                body = self._body(svc, family, labels, ports, chunk, placeholder)
                if i < len(olds):
                    await self._update(olds[i], body)
                else:
                    await self._create(key, body)
            for sl in olds[len(chunks):]:
                await self._delete(key, sl)
        for stale in by_key.values():
            for sl in stale:
                await self._delete(key, sl)

    def _body(self, svc: Obj, family: str, labels: dict[str, str], ports: list[Obj],
              eps: list[Obj], placeholder: bool) -> Obj:
        meta: Obj = {"generateName": f"{svc['metadata']['name'][:57]}-",
                     "namespace": svc["metadata"]["namespace"], "labels": labels,
                     "ownerReferences": [owner_reference(
                         {"apiVersion": "v1", "kind": "Service", **svc}, block=True)]}
        body: Obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": meta, "addressType": family, "endpoints": eps}
        if not placeholder:
            body["ports"] = ports
        return body

    async def _create(self, key: str, body: Obj) -> None:
        try:
            made = await self.slice_api.create(body, body["metadata"]["namespace"])
        except ApiError as e:
            if e.namespace_terminating:
                return  # namespace is going away
            raise
        self._created.setdefault(key, {})[made["metadata"]["name"]] = time.monotonic()

    async def _update(self, old: Obj, body: Obj) -> None:
        same = (old.get("endpoints") or []) == body["endpoints"] and \
            old.get("ports") == body.get("ports") and \
            (old["metadata"].get("labels") or {}) == body["metadata"]["labels"]
        if same:
            return
        new = dict(body)
        meta = dict(old["metadata"])
        meta["labels"] = body["metadata"]["labels"]
        meta["ownerReferences"] = body["metadata"]["ownerReferences"]
        new["metadata"] = meta
        if "ports" not in body:
            new["ports"] = None
        await self.slice_api.replace(new, meta["namespace"])

    async def _delete(self, key: str, sl: Obj) -> None:
        try:
            await self.slice_api.delete(sl["metadata"]["name"], sl["metadata"]["namespace"])
        except ApiError as e:
            if not e.not_found:
                raise
        self._deleted.setdefault(key, {})[sl["metadata"]["name"]] = time.monotonic()


def _service_index(sl: Obj) -> list[str]:
    labels = sl["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY) != CONTROLLER_NAME or not labels.get(SERVICE_NAME):
        return []
    return [f"{sl['metadata']['namespace']}/{labels[SERVICE_NAME]}"]


CONTROLLERS = {"endpointslice": EndpointSliceController}
