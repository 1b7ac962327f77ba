"""pinnace.dns.records: names -> answers from Service and EndpointSlice dicts,
as CoreDNS's kubernetes plugin gives them."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from pinnace.dns.records import Answer, ClusterRecords, dashed, undashed

ZONE = "cluster.local"


def service(name: str, ns: str = "ns", ips: list[str] | None = None, ports: list[dict] | None = None,
            **spec: object) -> dict:
    s: dict = {"ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if ips is not None:
        s["clusterIPs"] = ips
        s["clusterIP"] = ips[0]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}


def headless(name: str, ns: str = "ns", **spec: object) -> dict:
    return service(name, ns, ["None"], **spec)


def endpoint(ip: str, ready: bool | None = True, hostname: str | None = None) -> dict:
    ep: dict = {"addresses": [ip]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if hostname:
        ep["hostname"] = hostname
    return ep


def slice_(name: str, svc: str, endpoints: list[dict], ns: str = "ns", family: str = "IPv4",
           ports: list[dict] | None = None) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


@pytest.fixture
def zone() -> ClusterRecords:
    return ClusterRecords(ZONE, ["10.96.0.0/12", "10.244.0.0/16", "fd00:96::/108"])


def ask(z: ClusterRecords, name: str, qtype: str = "A") -> Answer:
    qname = dns.name.from_text(name)
    assert z.zone_of(qname) is not None, f"{name} is not in our zones"
    return z.answer(qname, dns.rdatatype.from_text(qtype))


def values(ans: Answer, qtype: str = "A") -> list[str]:
    t = dns.rdatatype.from_text(qtype)
    return sorted(rd.to_text() for rrset in ans.answer if rrset.rdtype == t for rd in rrset)


def nxdomain(ans: Answer) -> bool:
    return ans.rcode == dns.rcode.NXDOMAIN and not ans.answer and \
        [r.rdtype for r in ans.authority] == [dns.rdatatype.SOA]


def nodata(ans: Answer) -> bool:
    return ans.rcode == dns.rcode.NOERROR and not ans.answer and \
        [r.rdtype for r in ans.authority] == [dns.rdatatype.SOA]


def test_cluster_ip_service(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10"]))
    ans = ask(zone, "web.ns.svc.cluster.local")
    assert ans.rcode == dns.rcode.NOERROR and values(ans) == ["10.96.0.10"]
    assert ans.answer[0].ttl == 5
    # IPv4 only: AAAA is NODATA (the name exists), never NXDOMAIN
    assert nodata(ask(zone, "web.ns.svc.cluster.local", "AAAA"))
    # names are case-insensitive
    assert values(ask(zone, "WEB.Ns.SVC.cluster.LOCAL")) == ["10.96.0.10"]


def test_dual_stack_service(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10", "fd00:96::10"]))
    assert values(ask(zone, "web.ns.svc.cluster.local")) == ["10.96.0.10"]
    assert values(ask(zone, "web.ns.svc.cluster.local", "AAAA"), "AAAA") == ["fd00:96::10"]


def test_search_path_and_missing_names(zone: ClusterRecords) -> None:
    zone.set_service(service("kubernetes", "default", ["10.96.0.1"]))
    zone.set_service(service("web", ips=["10.96.0.10"]))
    # `kubernetes.default` from a pod in ns: the first search domain misses, the second hits
    assert nxdomain(ask(zone, "kubernetes.default.ns.svc.cluster.local"))
    assert values(ask(zone, "kubernetes.default.svc.cluster.local")) == ["10.96.0.1"]
    assert nxdomain(ask(zone, "kubernetes.default.cluster.local"))
    assert nxdomain(ask(zone, "nope.ns.svc.cluster.local"))
    assert nxdomain(ask(zone, "web.other.svc.cluster.local"))
    assert nxdomain(ask(zone, "example.com.cluster.local"))
    # namespaces with Services and the fixed subtrees exist without records of their own
    for name in ("ns.svc.cluster.local", "svc.cluster.local", "pod.cluster.local", "ns.pod.cluster.local"):
        assert nodata(ask(zone, name)), name
    assert nxdomain(ask(zone, "empty.svc.cluster.local"))


def test_negative_answers_carry_the_zone_soa(zone: ClusterRecords) -> None:
    ans = ask(zone, "nope.ns.svc.cluster.local")
    (soa,) = ans.authority
    assert soa.name == dns.name.from_text("cluster.local")
    assert soa.ttl == 5 and soa[0].minimum == 5
    assert soa[0].mname == dns.name.from_text("ns.dns.cluster.local")


def test_apex_soa_and_ns(zone: ClusterRecords) -> None:
    assert values(ask(zone, "cluster.local", "NS"), "NS") == ["ns.dns.cluster.local."]
    assert len(values(ask(zone, "cluster.local", "SOA"), "SOA")) == 1
    assert nodata(ask(zone, "cluster.local", "A"))
    assert nodata(ask(zone, "ns.dns.cluster.local"))
    zone.set_service(service("kube-dns", "kube-system", ["10.96.0.10"]))
    assert values(ask(zone, "ns.dns.cluster.local")) == ["10.96.0.10"]


def test_headless_service_ready_endpoints(zone: ClusterRecords) -> None:
    # the slice may arrive before its Service
    zone.set_slice(slice_("db-a", "db", [endpoint("10.244.1.1"), endpoint("10.244.1.2", ready=False),
                                         endpoint("10.244.1.3", ready=None)]))
    assert nxdomain(ask(zone, "db.ns.svc.cluster.local"))
    zone.set_service(headless("db"))
    # ready, and unknown readiness (counts as ready); the unready one is left out
    assert values(ask(zone, "db.ns.svc.cluster.local")) == ["10.244.1.1", "10.244.1.3"]
    # an address listed by two slices answers once
    zone.set_slice(slice_("db-b", "db", [endpoint("10.244.1.1"), endpoint("10.244.1.4")]))
    assert values(ask(zone, "db.ns.svc.cluster.local")) == ["10.244.1.1", "10.244.1.3", "10.244.1.4"]
    zone.set_service(headless("db", publishNotReadyAddresses=True))
    assert values(ask(zone, "db.ns.svc.cluster.local")) == [
        "10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4"]


def test_headless_without_endpoints_is_nodata(zone: ClusterRecords) -> None:
    zone.set_service(headless("db"))
    assert nodata(ask(zone, "db.ns.svc.cluster.local"))


def test_ipv6_endpoints(zone: ClusterRecords) -> None:
    zone.set_service(headless("db"))
    zone.set_slice(slice_("db-6", "db", [endpoint("fd00:244::5", hostname="db-0")], family="IPv6"))
    assert values(ask(zone, "db.ns.svc.cluster.local", "AAAA"), "AAAA") == ["fd00:244::5"]
    assert nodata(ask(zone, "db.ns.svc.cluster.local"))
    assert values(ask(zone, "db-0.db.ns.svc.cluster.local", "AAAA"), "AAAA") == ["fd00:244::5"]


def test_endpoint_hostnames_and_dashed_names(zone: ClusterRecords) -> None:
    zone.set_service(headless("db"))
    zone.set_slice(slice_("db-a", "db", [endpoint("10.244.1.1", hostname="db-0"),
                                         endpoint("10.244.1.2", hostname="db-1"),
                                         endpoint("10.244.1.3"),
                                         endpoint("10.244.1.9", ready=False, hostname="db-9")]))
    assert values(ask(zone, "db-0.db.ns.svc.cluster.local")) == ["10.244.1.1"]
    assert values(ask(zone, "db-1.db.ns.svc.cluster.local")) == ["10.244.1.2"]
    assert values(ask(zone, "10-244-1-3.db.ns.svc.cluster.local")) == ["10.244.1.3"]
    assert nxdomain(ask(zone, "db-9.db.ns.svc.cluster.local"))  # not ready
    assert nxdomain(ask(zone, "db-2.db.ns.svc.cluster.local"))
    assert nxdomain(ask(zone, "x.db-0.db.ns.svc.cluster.local"))


def test_srv_for_cluster_ip_service(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10"], ports=[
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"port": 9000}]))
    ans = ask(zone, "_http._tcp.web.ns.svc.cluster.local", "SRV")
    assert values(ans, "SRV") == ["0 100 80 web.ns.svc.cluster.local."]
    assert [(str(r.name), [rd.to_text() for rd in r]) for r in ans.additional] == [
        ("web.ns.svc.cluster.local.", ["10.96.0.10"])]
    assert values(ask(zone, "_dns._udp.web.ns.svc.cluster.local", "SRV"), "SRV") == [
        "0 100 53 web.ns.svc.cluster.local."]
    # the protocol must match; unknown ports and protocols do not exist
    assert nxdomain(ask(zone, "_dns._tcp.web.ns.svc.cluster.local", "SRV"))
    assert nxdomain(ask(zone, "_grpc._tcp.web.ns.svc.cluster.local", "SRV"))
    assert nxdomain(ask(zone, "_http._quic.web.ns.svc.cluster.local", "SRV"))
    # _tcp is an empty non-terminal; the SRV name has no A
    assert nodata(ask(zone, "_tcp.web.ns.svc.cluster.local", "SRV"))
    assert nodata(ask(zone, "_http._tcp.web.ns.svc.cluster.local", "A"))
    # SRV on the Service's own name: every port
    assert values(ask(zone, "web.ns.svc.cluster.local", "SRV"), "SRV") == [
        "0 33 53 web.ns.svc.cluster.local.", "0 33 80 web.ns.svc.cluster.local.",
        "0 33 9000 web.ns.svc.cluster.local."]


def test_srv_for_headless_service(zone: ClusterRecords) -> None:
    zone.set_service(headless("db", ports=[{"name": "pg", "port": 5432}]))
    zone.set_slice(slice_("db-a", "db", [endpoint("10.244.1.1", hostname="db-0"), endpoint("10.244.1.2"),
                                         endpoint("10.244.1.3", ready=False)],
                          ports=[{"name": "pg", "port": 5433, "protocol": "TCP"}]))
    ans = ask(zone, "_pg._tcp.db.ns.svc.cluster.local", "SRV")
    # one per ready endpoint, with the endpoint's port
    assert values(ans, "SRV") == ["0 50 5433 10-244-1-2.db.ns.svc.cluster.local.",
                                  "0 50 5433 db-0.db.ns.svc.cluster.local."]
    glue = {str(r.name): [rd.to_text() for rd in r] for r in ans.additional}
    assert glue == {"db-0.db.ns.svc.cluster.local.": ["10.244.1.1"],
                    "10-244-1-2.db.ns.svc.cluster.local.": ["10.244.1.2"]}


def test_external_name(zone: ClusterRecords) -> None:
    zone.set_service({"metadata": {"name": "ext", "namespace": "ns"},
                      "spec": {"type": "ExternalName", "externalName": "db.example.com"}})
    ans = ask(zone, "ext.ns.svc.cluster.local")
    assert values(ans, "CNAME") == ["db.example.com."]
    assert ans.cname_target == dns.name.from_text("db.example.com")
    assert values(ask(zone, "ext.ns.svc.cluster.local", "CNAME"), "CNAME") == ["db.example.com."]
    assert ask(zone, "ext.ns.svc.cluster.local", "CNAME").cname_target is None
    assert nxdomain(ask(zone, "_http._tcp.ext.ns.svc.cluster.local", "SRV"))


def test_external_name_inside_the_cluster_is_followed(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10"]))
    zone.set_service({"metadata": {"name": "alias", "namespace": "ns"},
                      "spec": {"type": "ExternalName", "externalName": "web.ns.svc.cluster.local."}})
    ans = ask(zone, "alias.ns.svc.cluster.local")
    assert values(ans, "CNAME") == ["web.ns.svc.cluster.local."]
    assert values(ans) == ["10.96.0.10"] and ans.cname_target is None


def test_pod_records(zone: ClusterRecords) -> None:
    assert values(ask(zone, "10-244-1-5.any.pod.cluster.local")) == ["10.244.1.5"]
    assert values(ask(zone, "fd00-244--5.any.pod.cluster.local", "AAAA"), "AAAA") == ["fd00:244::5"]
    assert nodata(ask(zone, "10-244-1-5.any.pod.cluster.local", "AAAA"))
    assert nxdomain(ask(zone, "10-244-1.any.pod.cluster.local"))
    assert nxdomain(ask(zone, "web.any.pod.cluster.local"))
    assert nxdomain(ask(zone, "x.10-244-1-5.any.pod.cluster.local"))


def test_dashed_round_trip() -> None:
    import ipaddress

    for text in ("10.1.2.3", "fd00::1", "2001:db8::8:800:200c:417a"):
        ip = ipaddress.ip_address(text)
        assert undashed(dashed(ip)) == ip


def test_ptr_records(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10", "fd00:96::10"]))
    zone.set_service(headless("db"))
    zone.set_slice(slice_("db-a", "db", [endpoint("10.244.1.1", hostname="db-0"), endpoint("10.244.1.2")]))
    assert values(ask(zone, "10.0.96.10.in-addr.arpa", "PTR"), "PTR") == ["web.ns.svc.cluster.local."]
    v6 = dns.name.from_text("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa")
    assert zone.zone_of(v6) is not None
    assert [rd.to_text() for rd in zone.answer(v6, dns.rdatatype.PTR).answer[0]] == [
        "web.ns.svc.cluster.local."]
    assert values(ask(zone, "1.1.244.10.in-addr.arpa", "PTR"), "PTR") == ["db-0.db.ns.svc.cluster.local."]
    assert values(ask(zone, "2.1.244.10.in-addr.arpa", "PTR"), "PTR") == [
        "10-244-1-2.db.ns.svc.cluster.local."]
    # inside our ranges but unknown: NXDOMAIN with the reverse zone's SOA
    ans = ask(zone, "9.9.244.10.in-addr.arpa", "PTR")
    assert nxdomain(ans) and ans.authority[0].name == dns.name.from_text("244.10.in-addr.arpa")
    assert nodata(ask(zone, "1.244.10.in-addr.arpa", "PTR"))


def test_reverse_zones_follow_the_ranges(zone: ClusterRecords) -> None:
    def zone_of(name: str) -> str | None:
        z = zone.zone_of(dns.name.from_text(name))
        return None if z is None else z.to_text()

    # 10.96.0.0/12 is sixteen /16 zones: 96.10 ... 111.10
    assert zone_of("1.0.96.10.in-addr.arpa") == "96.10.in-addr.arpa."
    assert zone_of("1.0.111.10.in-addr.arpa") == "111.10.in-addr.arpa."
    assert zone_of("1.0.112.10.in-addr.arpa") is None
    assert zone_of("1.0.95.10.in-addr.arpa") is None
    assert zone_of("4.3.2.1.in-addr.arpa") is None
    assert zone_of("10.in-addr.arpa") is None
    assert zone_of("example.com") is None
    assert zone_of("ns.svc.cluster.local") == "cluster.local."
    # fd00:96::/108 is nibble-aligned: one zone of 27 nibbles
    assert zone_of("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa") == \
        "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa."
    assert zone_of("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.6.9.0.0.0.0.d.f.ip6.arpa") is None


def test_changes_are_followed(zone: ClusterRecords) -> None:
    zone.set_service(headless("db"))
    zone.set_slice(slice_("db-a", "db", [endpoint("10.244.1.1", hostname="db-0")]))
    gen = zone.generation
    zone.set_slice(slice_("db-a", "db", [endpoint("10.244.1.2", hostname="db-0")]))
    assert zone.generation > gen
    assert values(ask(zone, "db-0.db.ns.svc.cluster.local")) == ["10.244.1.2"]
    assert nxdomain(ask(zone, "1.1.244.10.in-addr.arpa", "PTR"))
    # a slice relabelled to another Service leaves the first one
    zone.set_service(headless("db2"))
    zone.set_slice(slice_("db-a", "db2", [endpoint("10.244.1.2", hostname="db-0")]))
    assert nodata(ask(zone, "db.ns.svc.cluster.local"))
    assert values(ask(zone, "db2.ns.svc.cluster.local")) == ["10.244.1.2"]
    zone.delete_slice(slice_("db-a", "db2", []))
    assert nodata(ask(zone, "db2.ns.svc.cluster.local"))
    # a Service that goes away takes its names and PTRs with it
    zone.set_service(service("web", ips=["10.96.0.10"]))
    zone.delete_service(service("web"))
    assert nxdomain(ask(zone, "web.ns.svc.cluster.local"))
    assert nxdomain(ask(zone, "10.0.96.10.in-addr.arpa", "PTR"))
    zone.delete_service(headless("db"))
    zone.delete_service(headless("db2"))
    assert nxdomain(ask(zone, "ns.svc.cluster.local"))


def test_type_change_from_cluster_ip_to_external_name(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10"]))
    zone.set_service({"metadata": {"name": "web", "namespace": "ns"},
                      "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert values(ask(zone, "web.ns.svc.cluster.local"), "CNAME") == ["example.com."]
    assert nxdomain(ask(zone, "10.0.96.10.in-addr.arpa", "PTR"))


def test_ignored_slices(zone: ClusterRecords) -> None:
    zone.set_service(headless("db"))
    fqdn = slice_("db-f", "db", [{"addresses": ["db.example.com"]}], family="FQDN")
    zone.set_slice(fqdn)
    orphan = slice_("db-o", "db", [endpoint("10.244.1.1")])
    del orphan["metadata"]["labels"]
    zone.set_slice(orphan)
    assert nodata(ask(zone, "db.ns.svc.cluster.local"))
    zone.delete_slice(fqdn)
    zone.delete_slice(orphan)


def test_any_query(zone: ClusterRecords) -> None:
    zone.set_service(service("web", ips=["10.96.0.10"]))
    ans = ask(zone, "web.ns.svc.cluster.local", "ANY")
    assert {dns.rdatatype.to_text(r.rdtype) for r in ans.answer} == {"A", "SRV"}


def test_custom_domain() -> None:
    z = ClusterRecords("example.internal", [])
    z.set_service(service("web", ips=["10.96.0.10"]))
    assert values(z.answer(dns.name.from_text("web.ns.svc.example.internal"), dns.rdatatype.A)) == [
        "10.96.0.10"]
    assert z.zone_of(dns.name.from_text("web.ns.svc.cluster.local")) is None
    assert z.zone_of(dns.name.from_text("10.0.96.10.in-addr.arpa")) is None
