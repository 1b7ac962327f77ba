"""Service load balancer addresses: every Service of type LoadBalancer that
names no ``spec.loadBalancerClass`` (those belong to another implementation,
as upstream's service controller leaves them) gets one address from a
configured pool in ``status.loadBalancer.ingress``. The address is released
when the service is deleted, changes type or gains a class.

The pool is bookkeeping only: nothing here routes the addresses (the proxy
programs them). Allocations are rebuilt from existing services' status at
start, so a restart hands out no address twice.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pinnace.client import ApiError, key_of

from .base import Context, Controller

Obj = dict[str, Any]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_POOL = "172.18.255.200-172.18.255.250"


class AddressPool:
    """Addresses from ranges ("a-b"), CIDRs or single addresses, comma separated."""

    def __init__(self, spec: str):
        self.ranges: list[tuple[int, int, int]] = []  # (version, first, last)
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if "-" in part:
                a, b = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
                if a.version != b.version or int(b) < int(a):
                    raise ValueError(f"bad address range {part!r}")
                self.ranges.append((a.version, int(a), int(b)))
            elif "/" in part:
                net = ipaddress.ip_network(part, strict=False)
                self.ranges.append((net.version, int(net.network_address),
                                    int(net.broadcast_address)))
            else:
                a = ipaddress.ip_address(part)
                self.ranges.append((a.version, int(a), int(a)))
        self.owner: dict[str, str] = {}  # address -> service key

    def contains(self, ip: str) -> bool:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(v == a.version and lo <= int(a) <= hi for v, lo, hi in self.ranges)

    def assign(self, ip: str, key: str) -> bool:
        """Take ``ip`` for ``key``; False when another service holds it or it is not ours."""
        if not self.contains(ip) or self.owner.get(ip, key) != key:
            return False
        self.owner[ip] = key
        return True

    def allocate(self, key: str) -> str | None:
        for version, lo, hi in self.ranges:
            for n in range(lo, hi + 1):
                ip = str(ipaddress.ip_address(n) if version == 4 else ipaddress.IPv6Address(n))
                if ip not in self.owner:
                    self.owner[ip] = key
                    return ip
        return None

    def release(self, key: str) -> list[str]:
        ips = [ip for ip, k in self.owner.items() if k == key]
        for ip in ips:
            del self.owner[ip]
        return ips

    def held_by(self, key: str) -> list[str]:
        return [ip for ip, k in self.owner.items() if k == key]


def wants_address(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass") and \
        not svc["metadata"].get("deletionTimestamp")


def ingress_ips(svc: Obj) -> list[str]:
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or [] if i.get("ip")]


class ServiceLBController(Controller):
    name = "servicelb"
    event_source = "service-lb-controller"
    workers = 1  # one worker: allocation order stays first come, first served

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.pool = AddressPool(str(ctx.options.get("lb_pool", DEFAULT_POOL)))
        self.services = ctx.informers.informer("v1", "services")
        self.svc_api = self.client.resource("v1", "services")

    def setup(self) -> None:
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                  self._deleted)

    async def run(self) -> None:
        # Addresses already published stay with their services across restarts.
        for svc in self.services.objects():
            if wants_address(svc):
                for ip in ingress_ips(svc):
                    self.pool.assign(ip, key_of(svc))
        await super().run()

    def _deleted(self, svc: Obj) -> None:
        if self.pool.release(key_of(svc)):
            self._retry_waiting()

    def _retry_waiting(self) -> None:
        for other in self.services.objects():
            if wants_address(other) and not ingress_ips(other):
                self.enqueue(other)

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            if self.pool.release(key):
                self._retry_waiting()
            return
        if not wants_address(svc):
            await self._withdraw(key, svc)
            return
        ip = self._choose(key, svc)
        if ip is None:
            return
        if ingress_ips(svc) == [ip]:
            return
        meta = svc["metadata"]
        try:
            await self.svc_api.patch(meta["name"], {"status": {"loadBalancer": {
                "ingress": [{"ip": ip, "ipMode": "VIP"}]}}}, meta["namespace"],
                subresource="status")
        except ApiError as e:
            if e.not_found:
                self.pool.release(key)
                return
            raise
        self.recorder.event(svc, "Normal", "IPAllocated", f'Assigned IP ["{ip}"]')

    def _choose(self, key: str, svc: Obj) -> str | None:
        requested = (svc.get("spec") or {}).get("loadBalancerIP") or ""
        held = self.pool.held_by(key)
        if requested:
            if held and held != [requested]:
                self.pool.release(key)
            if self.pool.assign(requested, key):
                return requested
            why = "is not in the address pool" if not self.pool.contains(requested) \
                else "is already in use"
            self.recorder.event(svc, "Warning", "AllocationFailed",
                                f'Failed to allocate IP for "{key}": requested IP '
                                f'"{requested}" {why}')
            return None
        if held:
            return held[0]
        # Keep an address the status already shows, if no one else holds it.
        for ip in ingress_ips(svc):
            if self.pool.assign(ip, key):
                return ip
        fresh = self.pool.allocate(key)
        if fresh is None:
            self.recorder.event(svc, "Warning", "AllocationFailed",
                                f'Failed to allocate IP for "{key}": no available IPs')
        return fresh

    async def _withdraw(self, key: str, svc: Obj) -> None:
        held = self.pool.release(key)
        if held:
            self._retry_waiting()
        spec = svc.get("spec") or {}
        # A class or another implementation owns the status of a classed
        # LoadBalancer; only clear what we published.
        ours = [ip for ip in ingress_ips(svc) if ip in held or
                (spec.get("type") != "LoadBalancer" and self.pool.contains(ip))]
        if not ours:
            return
        meta = svc["metadata"]
        try:
            await self.svc_api.patch(meta["name"], {"status": {"loadBalancer": {"ingress": None}}},
                                     meta["namespace"], subresource="status")
        except ApiError as e:
            if not e.not_found:
                raise


CONTROLLERS: dict[str, type[Controller]] = {"servicelb": ServiceLBController}
