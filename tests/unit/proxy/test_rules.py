"""The proxy's rules as text: what a Service and its EndpointSlices become,
and the commands that change one service without touching the others."""

from __future__ import annotations

import re

from pinnace.proxy.nft import diff
from pinnace.proxy.rules import (
    NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    Rules,
    service_rules,
    skeleton,
)

CIDR = "10.244.0.0/16"


def svc(name="web", type_="ClusterIP", ports=None, **spec):
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": type_, "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP",
                                         "targetPort": 8080, "nodePort": 30001}], **spec}}


def slice_(*eps, port=8080, name="http"):
    return {"metadata": {"namespace": "default", "name": "web-abc",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "nodeName": node,
                           "conditions": {"ready": ready, "serving": ready, "terminating": False}}
                          for ip, node, ready in eps]}


def dnats(rules: Rules) -> list[str]:
    """Where the rules DNAT to, once each."""
    return sorted({m for rs in rules.chains.values() for r in rs
                   for m in re.findall(r"dnat to (\S+)", r)})


def test_cluster_ip_spreads_over_ready_endpoints_only():
    r = service_rules(svc(), [slice_(("10.244.0.5", "n1", True), ("10.244.1.7", "n2", True),
                                     ("10.244.1.8", "n2", False))], "n1", CIDR)
    assert dnats(r) == ["10.244.0.5:8080", "10.244.1.7:8080"]
    (key, verdict), = r.elements[SERVICE_IPS].items()
    assert key == "10.96.0.20 . tcp . 80"
    assert list(r.chains) == [verdict.removeprefix("goto ")]  # no chain per endpoint
    chain = r.chains[verdict.removeprefix("goto ")]
    # other machines' connections are masqueraded, not this node's own or its pods'
    assert chain[0] == f"ip saddr != {CIDR} fib saddr type != local jump mark-for-masquerade"
    # The first endpoint one time in two: a client that is that endpoint
    # (hairpin) is masqueraded, others are not; the two rules exclude each
    # other, so one draw decides. The second takes the rest.
    assert chain[1:] == [
        "meta l4proto tcp ip saddr 10.244.0.5 numgen random mod 2 == 0 "
        "meta mark set meta mark | 0x4000 dnat to 10.244.0.5:8080",
        "meta l4proto tcp ip saddr != 10.244.0.5 numgen random mod 2 == 0 "
        "dnat to 10.244.0.5:8080",
        "meta l4proto tcp ip saddr 10.244.1.7 meta mark set meta mark | 0x4000 "
        "dnat to 10.244.1.7:8080",
        "meta l4proto tcp dnat to 10.244.1.7:8080"]


def test_no_ready_endpoints_rejects_instead_of_hanging():
    r = service_rules(svc(type_="NodePort"), [slice_(("10.244.0.5", "n1", False))], "n1", CIDR)
    assert r.elements[NO_ENDPOINT_SERVICES] == {"10.96.0.20 . tcp . 80": "goto reject-chain"}
    assert r.elements[NO_ENDPOINT_NODEPORTS] == {"tcp . 30001": "goto reject-chain"}
    assert SERVICE_IPS not in r.elements and not r.chains


def test_terminating_endpoints_serve_when_none_is_ready():
    sl = slice_(("10.244.0.5", "n1", False))
    sl["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    r = service_rules(svc(), [sl], "n1", CIDR)
    assert dnats(r) == ["10.244.0.5:8080"]


def test_nodeport_and_external_traffic_policy():
    eps = [slice_(("10.244.0.5", "n1", True), ("10.244.1.7", "n2", True))]
    cluster = service_rules(svc(type_="NodePort"), eps, "n1", CIDR)
    ext = cluster.elements[SERVICE_NODEPORTS]["tcp . 30001"].removeprefix("goto ")
    assert cluster.chains[ext][:2] == ["ip saddr 127.0.0.0/8 jump mark-for-masquerade",
                                       "fib saddr type != local jump mark-for-masquerade"]
    local = service_rules(svc(type_="NodePort", externalTrafficPolicy="Local"), eps, "n1", CIDR)
    ext = local.chains[local.elements[SERVICE_NODEPORTS]["tcp . 30001"].removeprefix("goto ")]
    assert not any("type != local jump mark" in r for r in ext)   # the client address is kept
    assert ext[-1] == "meta l4proto tcp dnat to 10.244.0.5:8080"  # this node's only
    # a node without local endpoints drops external traffic
    other = service_rules(svc(type_="NodePort", externalTrafficPolicy="Local"), eps, "n3", CIDR)
    ext = other.chains[other.elements[SERVICE_NODEPORTS]["tcp . 30001"].removeprefix("goto ")]
    assert ext[-1] == "drop"


def test_internal_traffic_policy_local_uses_this_nodes_endpoints():
    r = service_rules(svc(internalTrafficPolicy="Local"),
                      [slice_(("10.244.0.5", "n1", True), ("10.244.1.7", "n2", True))], "n2", CIDR)
    chain = r.chains[r.elements[SERVICE_IPS]["10.96.0.20 . tcp . 80"].removeprefix("goto ")]
    assert chain[-1] == "meta l4proto tcp dnat to 10.244.1.7:8080"
    assert dnats(r) == ["10.244.1.7:8080"]


def test_session_affinity_pins_clients():
    r = service_rules(svc(sessionAffinity="ClientIP",
                          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
                      [slice_(("10.244.0.5", "n1", True), ("10.244.0.6", "n1", True))], "n1", CIDR)
    assert len(r.sets) == 2 and all("timeout 60s" in d for d in r.sets.values())
    chain = r.chains[r.elements[SERVICE_IPS]["10.96.0.20 . tcp . 80"].removeprefix("goto ")]
    # a pinned client goes back to its endpoint (two rules each: hairpin or not)...
    pinned = [rule for rule in chain if re.search(r"ip saddr @affinity-\S+ update", rule)]
    assert len(pinned) == 4 and pinned == chain[1:5]
    # ...and every way to an endpoint pins the client to it, refreshing the timeout
    for rule in chain[1:]:
        target = re.search(r"dnat to (\S+):", rule)[1]  # type: ignore[index]
        aff = re.search(r"update @(\S+) ", rule)[1]  # type: ignore[index]
        assert all(target in x for x in chain[1:] if f"@{aff} " in x), (aff, target)


def test_load_balancer_addresses_and_headless():
    lb = svc(type_="LoadBalancer")
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}
    r = service_rules(lb, [slice_(("10.244.0.5", "n1", True))], "n1", CIDR)
    assert "172.18.255.200 . tcp . 80" in r.elements[SERVICE_IPS]
    headless = svc(clusterIP="None", clusterIPs=["None"])
    assert service_rules(headless, [slice_(("10.244.0.5", "n1", True))], "n1", CIDR).elements == {}
    assert service_rules(svc(type_="ExternalName"), [], "n1", CIDR).chains == {}


def test_diff_touches_only_what_changed():
    one = service_rules(svc(), [slice_(("10.244.0.5", "n1", True))], "n1", CIDR)
    two = service_rules(svc(), [slice_(("10.244.0.5", "n1", True), ("10.244.0.6", "n1", True))],
                        "n1", CIDR)
    cmds = diff(one, two)
    (svc_chain,) = one.chains
    # the service's chain is rewritten; nothing else, no map element
    assert cmds[0] == f"flush chain ip pinnace-proxy {svc_chain}"
    assert [c.split()[:5] for c in cmds[1:]] == \
        [["add", "rule", "ip", "pinnace-proxy", svc_chain]] * len(two.chains[svc_chain])
    other = service_rules(svc(name="db", clusterIP="10.96.0.30", clusterIPs=["10.96.0.30"]),
                          [slice_(("10.244.0.9", "n1", True))], "n1", CIDR)
    assert not set(other.chains) & set(one.chains)  # services never share a chain
    gone = diff(two, Rules())
    assert gone[-1].startswith("delete chain") and any(c.startswith("delete element") for c in gone)
    assert diff(two, two) == []


def test_skeleton_has_the_hooks():
    text = "\n".join(skeleton(CIDR))
    for hook in ("prerouting", "output", "postrouting", "forward", "input"):
        assert f"hook {hook}" in text


def test_both_policies_local_keep_local_clients_on_every_endpoint():
    r = service_rules(svc(type_="NodePort", internalTrafficPolicy="Local", externalTrafficPolicy="Local"),
                      [slice_(("10.244.0.5", "n1", True), ("10.244.1.7", "n2", True))], "n1", CIDR)
    ext = r.chains[r.elements[SERVICE_NODEPORTS]["tcp . 30001"].removeprefix("goto ")]
    everyone = ext[1].removeprefix("fib saddr type local goto ")
    assert everyone.startswith("cluster-") and \
        "numgen random mod 2 == 0" in r.chains[everyone][0]
    assert dnats(Rules(chains={everyone: r.chains[everyone]})) == ["10.244.0.5:8080",
                                                                   "10.244.1.7:8080"]


def test_udp_flows_to_forget_when_endpoints_change():
    from pinnace.proxy.conntrack import stale

    dns = svc(name="dns", type_="NodePort",
              ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}])
    one = slice_(("10.244.0.5", "n1", True), port=53, name="dns")
    one["ports"][0]["protocol"] = "UDP"
    other = slice_(("10.244.0.9", "n1", True), port=53, name="dns")
    other["ports"][0]["protocol"] = "UDP"
    none = service_rules(dns, [], "n1", CIDR)
    first = service_rules(dns, [one], "n1", CIDR)
    second = service_rules(dns, [other], "n1", CIDR)
    # Refused flows now served, to the service address and the NodePort.
    assert stale(none.udp, first.udp) == (set(), {("10.96.0.20", 53)}, {30053})
    # The old endpoint's flows.
    assert stale(first.udp, second.udp) == ({"10.244.0.5"}, set(), set())
    assert stale(first.udp, first.udp) == (set(), set(), set())


def test_one_node_announces_each_load_balancer_address():
    from pinnace.proxy.proxier import announcer

    nodes = ["a", "b", "c"]
    ips = [f"172.18.255.{i}" for i in range(200, 240)]
    chosen = {ip: announcer(ip, nodes) for ip in ips}
    assert set(chosen.values()) == set(nodes)              # spread over the nodes
    assert chosen == {ip: announcer(ip, list(reversed(nodes))) for ip in ips}   # order-free
    without_b = {ip: announcer(ip, ["a", "c"]) for ip in ips}
    assert all(without_b[ip] == n for ip, n in chosen.items() if n != "b")   # only b's move
    assert announcer("172.18.255.200", []) == ""
