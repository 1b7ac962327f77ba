"""What the proxy programs for one Service: pure functions from a Service
and its EndpointSlices to nftables chains, map elements and sets. Nothing
here touches the kernel (nft.py does), so every rule can be tested as text.

The table's fixed part (base chains hooked into netfilter, the verdict
maps they look services up in) is in ``skeleton``. Each service port adds:

  service-<id>   cluster traffic: masquerade what comes from outside the
                 pod range, then pick an endpoint at random (numgen), or
                 the one a client is pinned to (sessionAffinity ClientIP)
  external-<id>  NodePort, LoadBalancer and external IP traffic:
                 externalTrafficPolicy Cluster masquerades and goes on to
                 service-<id>; Local keeps the client address and uses this
                 node's endpoints only (or drops when there are none)
  endpoint-<id>  one per endpoint: DNAT to it, masquerading a pod that
                 reaches itself (hairpin)
and elements in the maps: ClusterIP/external/LB address . proto . port →
its chain; NodePort proto . port → its external chain; a port with no
endpoints → reject, in the filter maps.

A change to a service therefore rewrites only its own chains and elements
(nft.py diffs them), which keeps an update O(change) at any table size.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

TABLE = "pinnace-proxy"
MASQ_MARK = "0x4000"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
DEFAULT_AFFINITY_SECONDS = 10800
# Who is masqueraded on the way to an endpoint: anything from another
# machine (its replies must come back through this node to be un-NATed);
# not this node's own connections, whose replies come back here anyway and
# which would otherwise all share the bridge address and run out of source
# ports while closed connections linger in conntrack; except those from
# 127/8, which cannot leave lo as they are.
_MASQ_OUTSIDERS = "ip saddr != {cidr} fib saddr type != local jump mark-for-masquerade"
_MASQ_LOOPBACK = "ip saddr 127.0.0.0/8 jump mark-for-masquerade"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str
    ready: bool
    serving: bool
    terminating: bool


@dataclass
class Rules:
    """What one service contributes: chains (name → rule lines, in order),
    map elements (map → key → verdict) and sets (name → declaration)."""
    chains: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)

    def element(self, map_name: str, key: str, verdict: str) -> None:
        self.elements.setdefault(map_name, {})[key] = verdict


def skeleton(cluster_cidr: str) -> list[str]:
    """The fixed part of the table, as nft commands (idempotent ``add``s)."""
    t = f"ip {TABLE}"
    cmds = [f"add table {t}"]
    for name, key in ((SERVICE_IPS, "ipv4_addr . inet_proto . inet_service"),
                      (SERVICE_NODEPORTS, "inet_proto . inet_service"),
                      (NO_ENDPOINT_SERVICES, "ipv4_addr . inet_proto . inet_service"),
                      (NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service")):
        cmds.append(f"add map {t} {name} {{ type {key} : verdict; }}")
    # Priorities as numbers (dstnat -100, srcnat 100, filter 0): older nft
    # knows some names only for some hooks.
    base = (("nat-prerouting", "nat", "prerouting", "-100", "jump services"),
            ("nat-output", "nat", "output", "-100", "jump services"),
            ("nat-postrouting", "nat", "postrouting", "100", "jump masquerading"),
            ("filter-forward", "filter", "forward", "-10", "ct state new jump service-endpoints-check"),
            ("filter-output", "filter", "output", "-10", "ct state new jump service-endpoints-check"),
            ("filter-input", "filter", "input", "-10", "ct state new jump nodeport-endpoints-check"),
            # Packets from elsewhere for 127/8 must not reach NodePorts on the
            # node's loopback (route_localnet is on for those; CVE-2020-8558).
            ("filter-prerouting", "filter", "prerouting", "-110",
             'iifname != "lo" ip daddr 127.0.0.0/8 drop'))
    helpers = {
        "services": [f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
                     f"fib daddr type local meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"],
        "masquerading": [f"meta mark & {MASQ_MARK} == 0 return",
                         f"meta mark set meta mark ^ {MASQ_MARK}",
                         "masquerade fully-random"],
        "mark-for-masquerade": [f"meta mark set meta mark | {MASQ_MARK}"],
        "service-endpoints-check": [f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"],
        "nodeport-endpoints-check": [
            f"fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"],
        "reject-chain": ["reject"],
    }
    # Helper chains first: the base chains jump to them.
    for name, rules in helpers.items():
        cmds += [f"add chain {t} {name}", f"flush chain {t} {name}"]
        cmds += [f"add rule {t} {name} {r}" for r in rules]
    for name, kind, hook, prio, rule in base:
        cmds += [f"add chain {t} {name} {{ type {kind} hook {hook} priority {prio}; policy accept; }}",
                 f"flush chain {t} {name}", f"add rule {t} {name} {rule}"]
    return cmds


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


def _id(*parts: str) -> str:
    """A short stable hash, so chain names stay unique and readable."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


@dataclass
class _Port:
    """One service port being turned into rules."""
    label: str          # ns/name/proto/port-name, readable in `nft list`
    proto: str
    port: int
    node_port: int
    affinity: int       # seconds; 0: none
    chains: dict[Endpoint, str] = field(default_factory=dict)

    def endpoint_chain(self, out: Rules, e: Endpoint) -> None:
        chain = f"endpoint-{_id(self.label, e.ip)}-{self.label}__{e.ip}/{e.port}"
        self.chains[e] = chain
        rules = [f"ip saddr {e.ip} jump mark-for-masquerade"]  # hairpin
        if self.affinity:
            aff = f"affinity-{_id(self.label, e.ip)}"
            out.sets[aff] = f"{{ type ipv4_addr; flags dynamic,timeout; timeout {self.affinity}s; }}"
            rules.append(f"update @{aff} {{ ip saddr }}")
        rules.append(f"meta l4proto {self.proto} dnat to {e.ip}:{e.port}")
        out.chains[chain] = rules

    def pick(self, targets: list[Endpoint]) -> list[str]:
        """Rules sending a connection to one of ``targets``."""
        rules = []
        if self.affinity:
            rules += [f"ip saddr @affinity-{_id(self.label, e.ip)} goto {self.chains[e]}"
                      for e in targets]
        # Endpoint i of n is taken with probability 1/(n-i) when none before
        # it was, which makes each equally likely (iptables' statistic
        # trick). Not one numgen vmap: each is an anonymous set, and the
        # kernel names a new one by walking all others, so a table of
        # thousands of services would take minutes to load.
        n = len(targets)
        for i, e in enumerate(targets):
            if i < n - 1:
                rules.append(f"numgen random mod {n - i} == 0 goto {self.chains[e]}")
            else:
                rules.append(f"goto {self.chains[e]}")
        return rules


def service_rules(svc: Obj, slices: list[Obj], node_name: str, cluster_cidr: str) -> Rules:
    """Everything ``svc`` contributes to the table (empty for services the
    proxy does not handle: headless, ExternalName, no ports)."""
    out = Rules()
    spec = svc.get("spec") or {}
    meta = svc.get("metadata") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name") or ""
    type_ = spec.get("type") or "ClusterIP"
    if type_ == "ExternalName":
        return out
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
    for sp in spec.get("ports") or []:
        protocol = sp.get("protocol") or "TCP"
        proto = _PROTOCOLS.get(protocol)
        if proto is None or not sp.get("port"):
            continue
        port_name = sp.get("name") or ""
        p = _Port(label=f"{ns}/{name}/{proto}/{port_name or sp['port']}", proto=proto,
                  port=int(sp["port"]), affinity=affinity,
                  node_port=int(sp.get("nodePort") or 0) if type_ in ("NodePort", "LoadBalancer") else 0)
        sid = _id(p.label)
        eps = _endpoints(slices, port_name, protocol)
        all_eps = usable(eps)
        local_eps = usable([e for e in eps if e.node == node_name])
        cluster_eps = local_eps if itp_local else all_eps
        for e in [*all_eps, *(e for e in local_eps if e not in all_eps)]:
            p.endpoint_chain(out, e)

        svc_chain = f"service-{sid}-{p.label}"
        for ip in cluster_ips:
            key = f"{ip} . {proto} . {p.port}"
            if cluster_eps:
                out.element(SERVICE_IPS, key, f"goto {svc_chain}")
            else:
                out.element(NO_ENDPOINT_SERVICES, key, "goto reject-chain")
        if cluster_eps:
            out.chains[svc_chain] = [_MASQ_OUTSIDERS.format(cidr=cluster_cidr), *p.pick(cluster_eps)]

        if not (p.node_port or ext_addrs):
            continue
        if not all_eps:
            for ip in ext_addrs:
                out.element(NO_ENDPOINT_SERVICES, f"{ip} . {proto} . {p.port}", "goto reject-chain")
            if p.node_port:
                out.element(NO_ENDPOINT_NODEPORTS, f"{proto} . {p.node_port}", "goto reject-chain")
            continue
        ext_chain = f"external-{sid}-{p.label}"
        if etp_local:
            # This node's own traffic and its pods' are not "external": they
            # may use any endpoint (kube-proxy's short-circuit).
            everyone = svc_chain
            if cluster_eps != all_eps:  # internalTrafficPolicy Local narrowed service-<id>
                everyone = f"cluster-{sid}-{p.label}"
                out.chains[everyone] = p.pick(all_eps)
            out.chains[ext_chain] = [_MASQ_LOOPBACK, f"fib saddr type local goto {everyone}",
                                     f"ip saddr {cluster_cidr} goto {everyone}",
                                     *(p.pick(local_eps) if local_eps else ["drop"])]
        else:
            out.chains[ext_chain] = [_MASQ_LOOPBACK, "fib saddr type != local jump mark-for-masquerade",
                                     *p.pick(all_eps)]
        for ip in ext_addrs:
            out.element(SERVICE_IPS, f"{ip} . {proto} . {p.port}", f"goto {ext_chain}")
        if p.node_port:
            out.element(SERVICE_NODEPORTS, f"{proto} . {p.node_port}", f"goto {ext_chain}")
    return out
