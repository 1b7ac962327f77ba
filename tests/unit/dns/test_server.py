"""pinnace.dns.server without sockets: ClusterDNS.respond() on wire bytes
(who is answered, malformed input, size limits, the answer cache), and the
upstream list (resolv.conf, never ourselves). Informers are stubs fed by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from pinnace.dns.server import ClusterDNS, _Forward, parse_address, read_resolv_conf


class StubInformer:
    """What ClusterDNS uses of an Informer: handlers and the synced event."""

    def __init__(self, synced: bool = True) -> None:
        self.synced = asyncio.Event()
        if synced:
            self.synced.set()
        self.handlers: list[tuple[Any, Any, Any]] = []

    def add_handler(self, on_add: Any, on_update: Any, on_delete: Any) -> None:
        self.handlers.append((on_add, on_update, on_delete))

    def add(self, obj: dict) -> None:
        for on_add, _, _ in self.handlers:
            on_add(obj)


def make(synced: bool = True, **kw: Any) -> tuple[ClusterDNS, StubInformer, StubInformer]:
    services, slices = StubInformer(synced), StubInformer(synced)
    kw.setdefault("upstreams", [])
    return ClusterDNS(services, slices, **kw), services, slices  # type: ignore[arg-type]


def service(name: str, ip: str, ns: str = "ns") -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80}]}}


def ask(server: ClusterDNS, name: str, qtype: str = "A", client: str = "10.244.0.5", tcp: bool = False,
        **query: Any) -> dns.message.Message:
    q = dns.message.make_query(name, qtype, **query)
    out = server.respond(q.to_wire(), client, tcp)
    assert isinstance(out, bytes), out
    r = dns.message.from_wire(out)
    assert r.id == q.id
    return r


def test_parse_address() -> None:
    assert parse_address("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_address("10.0.0.1:5353") == ("10.0.0.1", 5353)
    assert parse_address("fd00::1") == ("fd00::1", 53)
    assert parse_address("[fd00::1]:5353") == ("fd00::1", 5353)
    assert parse_address("[fd00::1]") == ("fd00::1", 53)


def test_read_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver  fd00::53 # v6\n"
                    "nameserver not-an-ip\noptions ndots:2\n;nameserver 192.0.2.9\nnameserver 10.96.0.10\n")
    assert read_resolv_conf(conf) == [("192.0.2.1", 53), ("fd00::53", 53), ("10.96.0.10", 53)]
    assert read_resolv_conf(tmp_path / "missing") == []
    # an upstream in the service range is the kube-dns Service, i.e. us: dropped
    server, _, _ = make(upstreams=None, resolv_conf=conf)
    assert server.upstreams == [("192.0.2.1", 53), ("fd00::53", 53)]


def test_never_forwards_to_itself() -> None:
    server, _, _ = make(upstreams=["127.0.0.1:5353", "127.0.0.1:53", "192.0.2.1"])
    server.host, server.port = "127.0.0.1", 5353
    assert [u for u in server.upstreams if not server._is_self(u)] == [("127.0.0.1", 53), ("192.0.2.1", 53)]
    server.host = "0.0.0.0"  # listening everywhere: any local address is us
    assert server._is_self(("127.0.0.1", 5353)) and server._is_self(("127.0.0.2", 5353))
    assert not server._is_self(("192.0.2.1", 5353))


@pytest.mark.parametrize("client,ok", [
    ("10.244.3.4", True), ("10.96.0.1", True), ("127.0.0.1", True), ("::1", True),
    ("::ffff:10.244.0.9", True), ("192.0.2.7", False), ("10.245.0.1", False), ("fd00::1", False),
    ("not-an-address", False)])
def test_allowed_networks(client: str, ok: bool) -> None:
    server, services, _ = make()
    services.add(service("web", "10.96.0.10"))
    r = ask(server, "web.ns.svc.cluster.local", client=client)
    if ok:
        assert r.rcode() == dns.rcode.NOERROR and r.answer
    else:
        assert r.rcode() == dns.rcode.REFUSED and not r.answer and not r.authority
    # forwarded names are refused too: not an open resolver
    out = server.respond(dns.message.make_query("example.com", "A").to_wire(), client, False)
    assert isinstance(out, _Forward) if ok else dns.message.from_wire(out).rcode() == dns.rcode.REFUSED


def test_allowed_networks_are_configurable() -> None:
    server, services, _ = make(allowed=["192.0.2.0/24"], allow_loopback=False, pod_cidrs=["10.128.0.0/9"])
    services.add(service("web", "10.96.0.10"))
    assert ask(server, "web.ns.svc.cluster.local", client="192.0.2.7").answer
    assert ask(server, "web.ns.svc.cluster.local", client="10.200.0.1").answer
    assert ask(server, "web.ns.svc.cluster.local", client="127.0.0.1").rcode() == dns.rcode.REFUSED
    assert ask(server, "web.ns.svc.cluster.local", client="10.0.0.1").rcode() == dns.rcode.REFUSED


def test_node_addresses_are_allowed() -> None:
    """Pods on other nodes arrive masqueraded to their node's address."""
    nodes = StubInformer()
    server, services, _ = make(nodes=nodes)
    services.add(service("web", "10.96.0.10"))

    def node(name: str, *addresses: tuple[str, str]) -> dict:
        return {"metadata": {"name": name},
                "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]}}

    assert ask(server, "web.ns.svc.cluster.local", client="192.168.5.2").rcode() == dns.rcode.REFUSED
    n1 = node("n1", ("InternalIP", "192.168.5.2"), ("ExternalIP", "203.0.113.9"), ("Hostname", "n1"))
    nodes.add(n1)
    assert ask(server, "web.ns.svc.cluster.local", client="192.168.5.2").answer
    assert ask(server, "web.ns.svc.cluster.local", client="::ffff:192.168.5.2").answer
    assert ask(server, "web.ns.svc.cluster.local", client="203.0.113.9").rcode() == dns.rcode.REFUSED
    on_add, on_update, on_delete = nodes.handlers[0]
    on_update(n1, node("n1", ("InternalIP", "192.168.5.3")))
    assert ask(server, "web.ns.svc.cluster.local", client="192.168.5.2").rcode() == dns.rcode.REFUSED
    assert ask(server, "web.ns.svc.cluster.local", client="192.168.5.3").answer
    on_delete(node("n1"))
    assert ask(server, "web.ns.svc.cluster.local", client="192.168.5.3").rcode() == dns.rcode.REFUSED


def test_our_zones_answered_others_forwarded() -> None:
    server, services, _ = make()
    services.add(service("web", "10.96.0.10"))
    r = ask(server, "web.ns.svc.cluster.local")
    assert r.flags & dns.flags.AA and r.flags & dns.flags.RA and r.answer[0].ttl == 5
    for name, qtype in (("example.com", "A"), ("4.3.2.1.in-addr.arpa", "PTR"), ("cluster.local.example.", "A")):
        q = dns.message.make_query(name, qtype)
        out = server.respond(q.to_wire(), "10.244.0.5", False)
        assert isinstance(out, _Forward) and out.query.id == q.id and out.response is None, name
    assert ask(server, "10.0.96.10.in-addr.arpa", "PTR").answer


def test_malformed_and_unsupported_queries() -> None:
    server, _, _ = make()
    assert server.respond(b"\x12\x34\x01", "10.244.0.5", False) is None  # shorter than a header
    q = dns.message.make_query("web.ns.svc.cluster.local", "A")
    response = dns.message.make_response(q).to_wire()
    assert server.respond(response, "10.244.0.5", False) is None  # a response: never answer it
    junk = q.to_wire()[:12] + b"\xff" * 5
    r = dns.message.from_wire(server.respond(junk, "10.244.0.5", False))  # type: ignore[arg-type]
    assert r.rcode() == dns.rcode.FORMERR and r.id == q.id
    notify = dns.message.make_query("cluster.local", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    r = dns.message.from_wire(server.respond(notify.to_wire(), "10.244.0.5", False))  # type: ignore[arg-type]
    assert r.rcode() == dns.rcode.NOTIMP
    assert ask(server, "cluster.local", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    assert ask(server, "cluster.local", "SOA").answer


def test_servfail_until_synced() -> None:
    server, services, slices = make(synced=False)
    assert ask(server, "kubernetes.default.svc.cluster.local").rcode() == dns.rcode.SERVFAIL
    services.synced.set()
    slices.synced.set()
    assert ask(server, "kubernetes.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_cached_answers_follow_changes() -> None:
    server, services, _ = make()
    services.add(service("web", "10.96.0.10"))
    for _ in range(3):  # cache hits carry each query's own ID (checked in ask)
        assert [rd.to_text() for rd in ask(server, "web.ns.svc.cluster.local").answer[0]] == ["10.96.0.10"]
    services.add(service("web", "10.96.0.11"))
    assert [rd.to_text() for rd in ask(server, "web.ns.svc.cluster.local").answer[0]] == ["10.96.0.11"]


def test_udp_size_limits() -> None:
    server, services, slices = make()
    services.add({"metadata": {"name": "many", "namespace": "ns"}, "spec": {"clusterIP": "None"}})
    slices.add({"metadata": {"name": "many-1", "namespace": "ns",
                             "labels": {"kubernetes.io/service-name": "many"}},
                "addressType": "IPv4", "endpoints": [{"addresses": [f"10.244.9.{i}"]} for i in range(1, 61)]})
    name = "many.ns.svc.cluster.local"
    # too big for UDP: TC, and as many addresses as fit (for clients that never retry over TCP)
    r = ask(server, name)
    assert r.flags & dns.flags.TC and len(r.to_wire()) <= 512 and 20 < len(r.answer[0]) < 60
    r = ask(server, name, use_edns=0, payload=4096)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 60
    r = ask(server, name, use_edns=0, payload=600)  # an EDNS payload of 600 allows 600 bytes
    assert r.flags & dns.flags.TC and 512 < len(r.to_wire()) <= 600 and 20 < len(r.answer[0]) < 60
    r = ask(server, name, tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 60


async def test_forward_without_upstreams_is_servfail() -> None:
    server, _, _ = make()
    q = dns.message.make_query("example.com", "A")
    job = server.respond(q.to_wire(), "10.244.0.5", False)
    assert isinstance(job, _Forward)
    r = dns.message.from_wire(await server.complete(job))
    assert r.rcode() == dns.rcode.SERVFAIL and r.id == q.id and r.question == q.question
