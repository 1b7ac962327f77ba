"""What the proxy programs for one Service in nftables: pure functions from
a Service's plan (model.py) to chains, map elements and sets. Nothing here
touches the kernel (nft.py does), so every rule can be tested as text.

The table's fixed part (base chains hooked into netfilter, the verdict
maps they look services up in) is in ``skeleton``. Each service port adds:

  service-<id>   cluster traffic: masquerade what comes from outside the
                 pod range, then pick an endpoint at random (numgen), or
                 the one a client is pinned to (sessionAffinity ClientIP),
                 and DNAT to it, masquerading a pod that reaches itself
                 (hairpin)
  external-<id>  NodePort, LoadBalancer and external IP traffic:
                 externalTrafficPolicy Cluster masquerades and goes on to
                 the endpoints as service-<id> does; Local keeps the client
                 address and uses this node's endpoints only (or drops when
                 there are none)
and elements in the maps: ClusterIP/external/LB address . proto . port →
its chain; NodePort proto . port → its external chain; a port with no
endpoints → reject, in the filter maps.

Endpoints have no chain of their own (kube-proxy's nftables mode gives each
one): every change's transaction makes libnftables read every chain of the
ruleset first, and endpoint chains were two thirds of them.

A change to a service therefore rewrites only its own chains and elements
(nft.py diffs them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import Endpoint, Obj, PortPlan, UdpFlows, plan, short_id, udp_flows

TABLE = "pinnace-proxy"
MASQ_MARK = "0x4000"
# What mark-for-masquerade does; hairpin rules do it inline.
_MARK_FOR_MASQUERADE = f"meta mark set meta mark | {MASQ_MARK}"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
# Who is masqueraded on the way to an endpoint: anything from another
# machine (its replies must come back through this node to be un-NATed);
# not this node's own connections, whose replies come back here anyway and
# which would otherwise all share the bridge address and run out of source
# ports while closed connections linger in conntrack; except those from
# 127/8, which cannot leave lo as they are.
_MASQ_OUTSIDERS = "ip saddr != {cidr} fib saddr type != local jump mark-for-masquerade"
_MASQ_LOOPBACK = "ip saddr 127.0.0.0/8 jump mark-for-masquerade"


@dataclass
class Rules:
    """What one service contributes: chains (name → rule lines, in order),
    map elements (map → key → verdict) and sets (name → declaration)."""
    chains: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)
    udp: UdpFlows = field(default_factory=UdpFlows)

    def empty(self) -> bool:
        return not (self.chains or self.elements)

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
        "mark-for-masquerade": [_MARK_FOR_MASQUERADE],
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


def _affinity_set(p: PortPlan, e: Endpoint) -> str:
    return f"affinity-{short_id(p.label, e.ip)}"


def _to(p: PortPlan, e: Endpoint, when: str, hairpin: bool) -> str:
    """A rule sending a connection that matches ``when`` to ``e``: remember
    the client (affinity), masquerade it if it is ``e`` itself (hairpin),
    DNAT. One rule, not a chain per endpoint."""
    stmts = [f"meta l4proto {p.proto}", when] if when else [f"meta l4proto {p.proto}"]
    if p.affinity:
        stmts.append(f"update @{_affinity_set(p, e)} {{ ip saddr }}")
    if hairpin:
        stmts.append(_MARK_FOR_MASQUERADE)
    stmts.append(f"dnat to {e.ip}:{e.port}")
    return " ".join(stmts)


def _pick(out: Rules, p: PortPlan, targets: list[Endpoint]) -> list[str]:
    """Rules sending a connection to one of ``targets``."""
    rules = []
    if p.affinity:
        for e in targets:
            out.sets[_affinity_set(p, e)] = \
                f"{{ type ipv4_addr; flags dynamic,timeout; timeout {p.affinity}s; }}"
            pinned = f"ip saddr @{_affinity_set(p, e)}"
            rules += [_to(p, e, f"ip saddr {e.ip} {pinned}", hairpin=True),
                      _to(p, e, pinned, hairpin=False)]
    # Endpoint i of n is taken with probability 1/(n-i) when none before
    # it was, which makes each equally likely (iptables' statistic
    # trick). Not one numgen vmap: each is an anonymous set, and the
    # kernel names a new one by walking all others, so a table of
    # thousands of services would take minutes to load. Each step is two
    # rules that cannot both apply (the client is the endpoint, or is
    # not), so one random draw decides it either way.
    n = len(targets)
    for i, e in enumerate(targets):
        draw = f"numgen random mod {n - i} == 0 " if i < n - 1 else ""
        rules += [_to(p, e, f"ip saddr {e.ip} {draw}".strip(), hairpin=True),
                  _to(p, e, f"ip saddr != {e.ip} {draw}".strip() if draw else "",
                      hairpin=False)]
    return rules


def service_rules(svc: Obj, slices: list[Obj], node_name: str, cluster_cidr: str) -> Rules:
    """Everything ``svc`` contributes to the table (empty for services the
    proxy does not handle: headless, ExternalName, no ports)."""
    plans = plan(svc, slices, node_name)
    out = Rules(udp=udp_flows(plans))
    for p in plans:
        _port_rules(out, p, cluster_cidr)
    return out


def _port_rules(out: Rules, p: PortPlan, cluster_cidr: str) -> None:
    proto, sid = p.proto, p.sid
    svc_chain = f"service-{sid}-{p.label}"
    for ip in p.cluster_ips:
        key = f"{ip} . {proto} . {p.port}"
        if p.cluster_eps:
            out.element(SERVICE_IPS, key, f"goto {svc_chain}")
        else:
            out.element(NO_ENDPOINT_SERVICES, key, "goto reject-chain")
    if p.cluster_eps:
        out.chains[svc_chain] = [_MASQ_OUTSIDERS.format(cidr=cluster_cidr),
                                 *_pick(out, p, p.cluster_eps)]

    if not p.external:
        return
    if not p.all_eps:
        for ip in p.ext_addrs:
            out.element(NO_ENDPOINT_SERVICES, f"{ip} . {proto} . {p.port}", "goto reject-chain")
        if p.node_port:
            out.element(NO_ENDPOINT_NODEPORTS, f"{proto} . {p.node_port}", "goto reject-chain")
        return
    ext_chain = f"external-{sid}-{p.label}"
    if p.etp_local:
        # This node's own traffic and its pods' are not "external": they
        # may use any endpoint (kube-proxy's short-circuit).
        everyone = svc_chain
        if p.cluster_eps != p.all_eps:  # internalTrafficPolicy Local narrowed service-<id>
            everyone = f"cluster-{sid}-{p.label}"
            out.chains[everyone] = _pick(out, p, p.all_eps)
        out.chains[ext_chain] = [_MASQ_LOOPBACK, f"fib saddr type local goto {everyone}",
                                 f"ip saddr {cluster_cidr} goto {everyone}",
                                 *(_pick(out, p, p.local_eps) if p.local_eps else ["drop"])]
    else:
        out.chains[ext_chain] = [_MASQ_LOOPBACK, "fib saddr type != local jump mark-for-masquerade",
                                 *_pick(out, p, p.all_eps)]
    for ip in p.ext_addrs:
        out.element(SERVICE_IPS, f"{ip} . {proto} . {p.port}", f"goto {ext_chain}")
    if p.node_port:
        out.element(SERVICE_NODEPORTS, f"{proto} . {p.node_port}", f"goto {ext_chain}")
