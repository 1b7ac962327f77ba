"""The service proxy of a node: watches Services and EndpointSlices and keeps
this node's nftables table (rules.py, nft.py), or its iptables chains where
nftables is missing (iptrules.py, iptables.py), in line with them, plus the
LoadBalancer addresses the node answers for (addresses.py; one node per
address, elected from the Ready nodes the same way on every node).

Changes are coalesced: a handler only marks the service dirty and wakes the
sync loop, which applies every dirty service in one transaction. The first
sync after the informers have listed writes the whole table, which is how
rules left by a previous run are reconciled; after that only dirty services
are touched. Runs in the agent (one per node) or alone as `pinnace proxy`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from pinnace.client import Client, Informer, key_of
from pinnace.client.informer import strip_managed_fields

from . import addresses, conntrack, iptables, nft, sysctl
from .iptrules import service_rules as iptables_rules
from .model import UdpFlows
from .rules import service_rules as nftables_rules
from .table import ServiceTable

log = logging.getLogger("pinnace.proxy")

Obj = dict[str, Any]
SERVICE_LABEL = "kubernetes.io/service-name"


def _slice_service(sl: Obj) -> str:
    meta = sl.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_LABEL)
    return f"{meta.get('namespace')}/{name}" if name else ""


class Proxier:
    def __init__(self, client: Client, node_name: str, state_dir: Path, *,
                 cluster_cidr: str = "10.244.0.0/16", mode: str = "auto",
                 services: Informer | None = None, nodes: Informer | None = None):
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.state_dir = state_dir
        # The agent shares its service informer; alone we make our own.
        self.services = services or Informer(client.resource("v1", "services"))
        self._own_services = services is None
        self.slices = Informer(client.resource("discovery.k8s.io/v1", "endpointslices"),
                               transform=strip_managed_fields)
        self.slices.add_index("service", lambda sl: [_slice_service(sl)] if _slice_service(sl) else [])
        # The agent shares its node informer (kubelet/routes.py: whose
        # transform keeps node_readiness's fields); alone we make our own.
        self.nodes = nodes or Informer(client.resource("v1", "nodes"), transform=node_readiness)
        self._own_nodes = nodes is None
        self.mode = choose_mode(mode)
        self.table: ServiceTable[Any] = nft.Table(cluster_cidr) if self.mode == "nftables" \
            else iptables.Table(cluster_cidr)
        self._render = nftables_rules if self.mode == "nftables" else iptables_rules
        self.lb = addresses.LocalAddresses()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.synced = asyncio.Event()
        self.last_sync_ms = 0.0

    def _mark(self, key: str) -> None:
        if key:
            self._dirty.add(key)
            self._wake.set()

    def _service_event(self, *objs: Obj) -> None:
        self._mark(key_of(objs[-1]))

    def _slice_event(self, *objs: Obj) -> None:
        for o in objs:
            self._mark(_slice_service(o))

    def rules_for(self, key: str) -> Any:
        """The rules (rules.Rules or iptrules.IptRules, by mode) of one service."""
        svc = self.services.get(key)
        if svc is None:
            return None
        return self._render(svc, self.slices.by_index("service", key), self.node_name,
                             self.cluster_cidr)

    def _node_event(self, *objs: Obj) -> None:
        # Heartbeats change nothing here: only a node coming, going or
        # changing readiness moves an announcement.
        if len(objs) == 2 and objs[0] == objs[1]:
            return
        self._wake.set()

    def _lb_addresses(self) -> set[str]:
        """The LoadBalancer addresses this node announces: for each, one node
        of those that can serve it (Ready; with externalTrafficPolicy Local,
        holding a ready endpoint), the same on every node (highest hash of
        node and address), as MetalLB's layer-2 mode elects a speaker. Every
        node has the rules; only one answers for the address."""
        ready = sorted(n["name"] for n in self.nodes.objects() if n["ready"])
        out = set()
        for svc in self.services.objects():
            spec = svc.get("spec") or {}
            if spec.get("type") != "LoadBalancer":
                continue
            candidates = ready
            if spec.get("externalTrafficPolicy") == "Local":
                local = {ep.get("nodeName") for sl in self.slices.by_index("service", key_of(svc))
                         for ep in sl.get("endpoints") or []
                         if (ep.get("conditions") or {}).get("ready") is not False}
                candidates = [n for n in ready if n in local]
            for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                ip = ing.get("ip")
                if ip and ":" not in ip and announcer(ip, candidates) == self.node_name:
                    out.add(ip)
        return out

    async def run(self) -> None:
        await asyncio.to_thread(sysctl.prepare, self.state_dir)
        self.services.add_handler(self._service_event, self._service_event, self._service_event)
        self.slices.add_handler(self._slice_event, self._slice_event, self._slice_event)
        if self._own_services:
            self.services.start()
        self.nodes.add_handler(self._node_event, self._node_event, self._node_event)
        self.slices.start()
        if self._own_nodes:
            self.nodes.start()
        try:
            await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait(),
                                 self.nodes.synced.wait())
            await self._sync_all()
            self.synced.set()
            await self._loop()
        finally:
            if self._own_services:
                await self.services.stop()
            await self.slices.stop()
            if self._own_nodes:
                await self.nodes.stop()

    async def _sync_all(self) -> None:
        self._dirty.clear()
        desired = {}
        for svc in self.services.objects():
            key = key_of(svc)
            rules = self.rules_for(key)
            if rules is not None and not rules.empty():
                desired[key] = rules
        await asyncio.to_thread(_remove_other_mode, self.mode)
        await asyncio.to_thread(self.table.replace_all, desired)
        await asyncio.to_thread(self.lb.set, self._lb_addresses())

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            started = time.monotonic()
            changed = {key: self.rules_for(key) for key in dirty}
            gone: set[str] = set()
            served: set[tuple[str, int]] = set()
            nodeports: set[int] = set()
            for key, rules in changed.items():
                before = self.table.applied.get(key)
                g, s, ports = conntrack.stale(before.udp if before else UdpFlows(),
                                              rules.udp if rules else UdpFlows())
                gone |= g
                served |= s
                nodeports |= ports
            try:
                n = await asyncio.to_thread(self.table.update, changed)
                if gone or served or nodeports:
                    await asyncio.to_thread(conntrack.forget, gone, served, nodeports)
                await asyncio.to_thread(self.lb.set, self._lb_addresses())
            except (nft.NftError, iptables.IptablesError, OSError) as e:
                log.warning("updating the proxy rules failed (retrying): %s", e)
                self._dirty |= dirty
                await asyncio.sleep(1)
                self._wake.set()
                continue
            self.last_sync_ms = (time.monotonic() - started) * 1000
            if n:
                log.debug("proxy: %d services, %d %s commands, %.1f ms", len(dirty), n,
                          self.mode, self.last_sync_ms)


def choose_mode(wanted: str) -> str:
    """nftables or iptables: as asked, or for "auto" nftables where the nft
    command and the kernel have it, else iptables (one log line says so)."""
    if wanted in ("nftables", "iptables"):
        return wanted
    why = nft.unusable()
    if not why:
        return "nftables"
    if iptables.available():
        log.info("service proxy: nftables unusable (%s); using iptables", why)
        return "iptables"
    raise nft.NftError(f"the service proxy needs nftables or iptables: {why}")


def _remove_other_mode(mode: str) -> None:
    """What a previous run in the other mode left would catch packets first."""
    if mode == "nftables":
        iptables.delete_all()
    elif not nft.unusable():
        nft.delete_table()


def node_readiness(node: Obj) -> Obj:
    """What the proxy needs of a Node: its name and whether it is Ready
    (its status, heartbeats included, is large and changes often)."""
    return {"metadata": {"name": node["metadata"]["name"]}, "name": node["metadata"]["name"],
            "ready": any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in (node.get("status") or {}).get("conditions") or [])}


def announcer(ip: str, nodes: list[str]) -> str:
    """Which of ``nodes`` answers for ``ip`` (rendezvous hashing: a node
    leaving moves only its own addresses)."""
    if not nodes:
        return ""
    return max(nodes, key=lambda n: hashlib.sha256(f"{n}/{ip}".encode()).digest())


def cleanup(state_dir: Path) -> list[str]:
    """Remove every rule and address the proxy made and restore the sysctls
    it changed (`pinnace proxy --cleanup`). Returns what was removed."""
    done = []
    if not nft.unusable() and nft.delete_table():
        done.append(f"nft table ip {nft.TABLE}")
    done += iptables.delete_all()
    done += addresses.LocalAddresses().remove()
    done += sysctl.restore(state_dir)
    return done


async def run_proxy(kubeconfig: str | None, node_name: str, state_dir: Path,
                    cluster_cidr: str = "10.244.0.0/16", mode: str = "auto") -> None:
    """`pinnace proxy`: the proxy alone, for nodes whose agent runs without one."""
    from pinnace.client import auto_config

    async with Client(auto_config(kubeconfig)) as client:
        await Proxier(client, node_name, state_dir, cluster_cidr=cluster_cidr, mode=mode).run()
