"""What a Service means to one node's proxy, whatever writes the rules: for
each service port, the addresses it is reached at and the endpoints each of
them leads to. rules.py renders this as nftables, iptrules.py as iptables;
conntrack.py reads which UDP flows a change makes stale.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True)
class UdpFlows:
    """The UDP part of a service, for forgetting conntrack entries."""
    endpoints: frozenset[str] = frozenset()                   # endpoint addresses
    serving: frozenset[tuple[str, int]] = frozenset()         # address . port with endpoints
    refusing: frozenset[tuple[str, int]] = frozenset()        # address . port without
    serving_nodeports: frozenset[int] = frozenset()
    refusing_nodeports: frozenset[int] = frozenset()


@dataclass
class PortPlan:
    """One service port on this node."""
    label: str                  # ns/name/proto/port-name, readable in rule listings
    proto: str                  # tcp, udp, sctp
    port: int
    node_port: int              # 0: none
    affinity: int               # ClientIP affinity timeout in seconds; 0: none
    cluster_ips: list[str]
    ext_addrs: list[str]        # external IPs and LoadBalancer ingress addresses
    all_eps: list[Endpoint]     # usable endpoints anywhere
    local_eps: list[Endpoint]   # usable endpoints on this node
    cluster_eps: list[Endpoint]  # what cluster traffic may use (internalTrafficPolicy)
    etp_local: bool             # externalTrafficPolicy Local
    sid: str = field(init=False)

    def __post_init__(self) -> None:
        self.sid = short_id(self.label)

    @property
    def endpoints(self) -> list[Endpoint]:
        """Every endpoint some rule of this port sends to."""
        return [*self.all_eps, *(e for e in self.local_eps if e not in self.all_eps)]

    @property
    def external(self) -> bool:
        return bool(self.node_port or self.ext_addrs)


def short_id(*parts: str) -> str:
    """A short stable hash, so chain names stay unique and readable."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def _endpoints(slices: list[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    """Endpoints for one service port, deduplicated by address (a pod may
    appear in two slices while the controller moves it)."""
    seen: dict[str, Endpoint] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        port = next((p for p in sl.get("ports") or []
                     if (p.get("name") or "") == port_name
                     and (p.get("protocol") or "TCP") == protocol), None)
        if port is None or not port.get("port"):
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False
            for ip in (ep.get("addresses") or [])[:1]:
                if ip in seen:
                    continue
                seen[ip] = Endpoint(ip=ip, port=int(port["port"]), node=ep.get("nodeName") or "",
                                    ready=ready, serving=cond.get("serving", ready) is not False,
                                    terminating=cond.get("terminating") is True)
    return sorted(seen.values(), key=lambda e: (ipaddress.ip_address(e.ip), e.port))


def usable(endpoints: list[Endpoint]) -> list[Endpoint]:
    """Ready endpoints; failing those, serving ones that are terminating, so
    a rollout's last pods keep answering until they stop (as kube-proxy does)."""
    ready = [e for e in endpoints if e.ready]
    return ready or [e for e in endpoints if e.serving and e.terminating]


def plan(svc: Obj, slices: list[Obj], node_name: str) -> list[PortPlan]:
    """The ports of ``svc`` the proxy handles (none for headless, ExternalName,
    or IPv6-only services)."""
    spec = svc.get("spec") or {}
    meta = svc.get("metadata") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name") or ""
    type_ = spec.get("type") or "ClusterIP"
    if type_ == "ExternalName":
        return []
    cluster_ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")])
                   if ip and ip != "None" and ":" not in ip]
    lb_ips = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
              if i.get("ip") and ":" not in i["ip"]] if type_ == "LoadBalancer" else []
    ext_addrs = [*(ip for ip in spec.get("externalIPs") or [] if ":" not in ip), *lb_ips]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int((((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
                        .get("timeoutSeconds")) or DEFAULT_AFFINITY_SECONDS)
    etp_local = spec.get("externalTrafficPolicy") == "Local" and type_ in ("NodePort", "LoadBalancer")
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    plans = []
    for sp in spec.get("ports") or []:
        protocol = sp.get("protocol") or "TCP"
        proto = PROTOCOLS.get(protocol)
        if proto is None or not sp.get("port"):
            continue
        port_name = sp.get("name") or ""
        eps = _endpoints(slices, port_name, protocol)
        all_eps = usable(eps)
        local_eps = usable([e for e in eps if e.node == node_name])
        plans.append(PortPlan(
            label=f"{ns}/{name}/{proto}/{port_name or sp['port']}", proto=proto,
            port=int(sp["port"]), affinity=affinity,
            node_port=int(sp.get("nodePort") or 0) if type_ in ("NodePort", "LoadBalancer") else 0,
            cluster_ips=cluster_ips, ext_addrs=ext_addrs, all_eps=all_eps, local_eps=local_eps,
            cluster_eps=local_eps if itp_local else all_eps, etp_local=etp_local))
    return plans


def udp_flows(plans: list[PortPlan]) -> UdpFlows:
    endpoints: set[str] = set()
    serving: set[tuple[str, int]] = set()
    refusing: set[tuple[str, int]] = set()
    serving_np: set[int] = set()
    refusing_np: set[int] = set()
    for p in plans:
        if p.proto != "udp":
            continue
        endpoints |= {e.ip for e in p.endpoints}
        (serving if p.cluster_eps else refusing).update((ip, p.port) for ip in p.cluster_ips)
        (serving if p.all_eps else refusing).update((ip, p.port) for ip in p.ext_addrs)
        if p.node_port:
            (serving_np if p.all_eps else refusing_np).add(p.node_port)
    return UdpFlows(frozenset(endpoints), frozenset(serving), frozenset(refusing),
                    frozenset(serving_np), frozenset(refusing_np))
