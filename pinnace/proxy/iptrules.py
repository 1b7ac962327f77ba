"""What the proxy programs for one Service in iptables, the fallback where
nftables is missing: the same plan as rules.py (model.py) in the shape of
kube-proxy's iptables mode. Pure functions again; iptables.py writes them.

Each service port adds, in the nat table:

  PINNACE-SVC-<h>  cluster traffic: mark what comes from outside the pod
                   range for masquerading, then pick an endpoint (the
                   statistic match's 1/(n-i) chain, or the endpoint a client
                   is pinned to by the recent match)
  PINNACE-EXT-<h>  NodePort, LoadBalancer and external IP traffic, as the
                   nftables external-<id> chain
  PINNACE-SEP-<h>  one per endpoint: DNAT to it, hairpin masquerading

and entries in the shared chains: PINNACE-SERVICES (address, protocol,
port → its chain), PINNACE-NODEPORTS (protocol, port → its external chain),
and in the filter table PINNACE-REJECTS and PINNACE-NODEPORT-REJECTS for
ports without endpoints. Chain names hash the port's label (iptables allows
28 characters); a comment carries the label itself, readable in
`iptables-save`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .model import Endpoint, Obj, PortPlan, UdpFlows, plan, udp_flows

PREFIX = "PINNACE-"
SERVICES = "PINNACE-SERVICES"
NODEPORTS = "PINNACE-NODEPORTS"
POSTROUTING = "PINNACE-POSTROUTING"
MARK_MASQ = "PINNACE-MARK-MASQ"
REJECTS = "PINNACE-REJECTS"
NODEPORT_REJECTS = "PINNACE-NODEPORT-REJECTS"
FIREWALL = "PINNACE-FIREWALL"
MASQ_MARK = "0x4000"
NEW = "-m conntrack --ctstate NEW"
LOCAL_DST = "-m addrtype --dst-type LOCAL"

# The fixed chains of each table, and the rules built-in chains jump to them
# with (inserted first, in this order).
SKELETON: dict[str, dict[str, list[str]]] = {
    "nat": {
        SERVICES: [],
        NODEPORTS: [],
        MARK_MASQ: [f"-j MARK --or-mark {MASQ_MARK}"],
        POSTROUTING: [f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
                      f"-j MARK --xor-mark {MASQ_MARK}",
                      "-j MASQUERADE --random-fully"],
    },
    "filter": {REJECTS: [], NODEPORT_REJECTS: []},
    # Packets from elsewhere for 127/8 must not reach NodePorts on the node's
    # loopback (route_localnet is on for those; CVE-2020-8558): dropped
    # before NAT, as the nftables table's prerouting filter does.
    "raw": {FIREWALL: ['! -i lo -d 127.0.0.0/8 -j DROP']},
}
HOOKS: dict[str, list[tuple[str, str]]] = {
    "nat": [("PREROUTING", f"-j {SERVICES}"), ("PREROUTING", f"{LOCAL_DST} -j {NODEPORTS}"),
            ("OUTPUT", f"-j {SERVICES}"), ("OUTPUT", f"{LOCAL_DST} -j {NODEPORTS}"),
            ("POSTROUTING", f"-j {POSTROUTING}")],
    "filter": [("FORWARD", f"{NEW} -j {REJECTS}"), ("OUTPUT", f"{NEW} -j {REJECTS}"),
               ("INPUT", f"{NEW} -j {NODEPORT_REJECTS}")],
    "raw": [("PREROUTING", f"-j {FIREWALL}")],
}


@dataclass
class IptRules:
    """What one service contributes: its own chains ((table, chain) → rules,
    in order) and its entries in the shared chains ((table, chain, rule))."""
    chains: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    entries: set[tuple[str, str, str]] = field(default_factory=set)
    udp: UdpFlows = field(default_factory=UdpFlows)

    def empty(self) -> bool:
        return not (self.chains or self.entries)


def _name(kind: str, *parts: str) -> str:
    return f"{PREFIX}{kind}-" + hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def _comment(label: str) -> str:
    return f'-m comment --comment "{label}"'


def _sep(p: PortPlan, e: Endpoint) -> str:
    return _name("SEP", p.label, e.ip, str(e.port))


def _pick(p: PortPlan, targets: list[Endpoint]) -> list[str]:
    rules = []
    if p.affinity:
        rules += [f"-m recent --name {_sep(p, e)} --mask 255.255.255.255 --rsource --rcheck "
                  f"--seconds {p.affinity} --reap -j {_sep(p, e)}" for e in targets]
    n = len(targets)
    for i, e in enumerate(targets):
        if i < n - 1:
            rules.append(f"-m statistic --mode random --probability {1 / (n - i):.10f} "
                         f"-j {_sep(p, e)}")
        else:
            rules.append(f"-j {_sep(p, e)}")
    return rules


def service_rules(svc: Obj, slices: list[Obj], node_name: str, cluster_cidr: str) -> IptRules:
    """Everything ``svc`` contributes (empty for services the proxy does not
    handle: headless, ExternalName, no ports)."""
    plans = plan(svc, slices, node_name)
    out = IptRules(udp=udp_flows(plans))
    for p in plans:
        _port_rules(out, p, cluster_cidr)
    return out


def _port_rules(out: IptRules, p: PortPlan, cidr: str) -> None:
    match = f"-p {p.proto} -m {p.proto} --dport {p.port}"
    note = _comment(p.label)
    for e in p.endpoints:
        rules = [f"-s {e.ip}/32 -j {MARK_MASQ}"]  # hairpin
        if p.affinity:
            rules.append(f"-m recent --name {_sep(p, e)} --mask 255.255.255.255 --rsource --set")
        rules.append(f"-p {p.proto} -j DNAT --to-destination {e.ip}:{e.port}")
        out.chains["nat", _sep(p, e)] = rules

    svc_chain = _name("SVC", p.label)
    for ip in p.cluster_ips:
        if p.cluster_eps:
            out.entries.add(("nat", SERVICES, f"-d {ip}/32 {match} {note} -j {svc_chain}"))
        else:
            out.entries.add(("filter", REJECTS, f"-d {ip}/32 {match} {note} -j REJECT"))
    if p.cluster_eps:
        out.chains["nat", svc_chain] = [
            f"! -s {cidr} -m addrtype ! --src-type LOCAL -j {MARK_MASQ}", *_pick(p, p.cluster_eps)]

    if not p.external:
        return
    nodeport = f"-p {p.proto} -m {p.proto} --dport {p.node_port}"
    if not p.all_eps:
        for ip in p.ext_addrs:
            out.entries.add(("filter", REJECTS, f"-d {ip}/32 {match} {note} -j REJECT"))
        if p.node_port:
            out.entries.add(("filter", NODEPORT_REJECTS, f"{LOCAL_DST} {nodeport} {note} -j REJECT"))
        return
    ext_chain = _name("EXT", p.label)
    loopback = f"-s 127.0.0.0/8 -j {MARK_MASQ}"
    if p.etp_local:
        # This node's own traffic and its pods' may use any endpoint.
        everyone = svc_chain
        if p.cluster_eps != p.all_eps:  # internalTrafficPolicy Local narrowed the service chain
            everyone = _name("CLU", p.label)
            out.chains["nat", everyone] = _pick(p, p.all_eps)
        out.chains["nat", ext_chain] = [loopback, f"-m addrtype --src-type LOCAL -j {everyone}",
                                        f"-s {cidr} -j {everyone}", *_pick(p, p.local_eps)]
        if not p.local_eps:
            # Nothing here serves it: what was not sent elsewhere above is
            # dropped (the nat table cannot drop; the filter table sees the
            # packet still addressed to the service).
            for ip in p.ext_addrs:
                out.entries.add(("filter", REJECTS, f"-d {ip}/32 {match} {note} -j DROP"))
            if p.node_port:
                out.entries.add(("filter", NODEPORT_REJECTS,
                                 f"{LOCAL_DST} {nodeport} {note} -j DROP"))
    else:
        out.chains["nat", ext_chain] = [loopback, f"-m addrtype ! --src-type LOCAL -j {MARK_MASQ}",
                                        *_pick(p, p.all_eps)]
    for ip in p.ext_addrs:
        out.entries.add(("nat", SERVICES, f"-d {ip}/32 {match} {note} -j {ext_chain}"))
    if p.node_port:
        out.entries.add(("nat", NODEPORTS, f"{nodeport} {note} -j {ext_chain}"))
