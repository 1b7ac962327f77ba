"""pinnace.dns against a real API server, asked by a real DNS client
(dnspython's dns.query over UDP and TCP): Services and EndpointSlices made
through the API become answers; other names go to a fake upstream on
loopback (never the real network)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pinnace.client import Client, Informer, InformerFactory, load_kubeconfig
from pinnace.dns import ClusterDNS, run_dns
from tests.conftest import Server

# ------------------------------------------------------------ fake upstream


class FakeUpstream:
    """A tiny resolver on 127.0.0.1 (UDP and TCP on one port): *.example.org
    and db.example.com have A records, big.example.org a TXT too large for
    UDP, silent.example.org is never answered; it records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.port = 0
        self._udp: Any = None
        self._tcp: asyncio.Server | None = None

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        q = dns.message.from_wire(wire)
        name = q.question[0].name.to_text().lower()
        self.asked.append((name, transport))
        if name == "silent.example.org.":
            return None
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        qtype = q.question[0].rdtype
        if name == "big.example.org." and qtype == dns.rdatatype.TXT:
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", *[f'"{i}{"x" * 200}"' for i in range(10)]))
        elif name in ("db.example.com.", "www.example.org.") and qtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.10"))
        elif not name.endswith("example.org.") and name != "db.example.com.":
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire(max_size=512 if transport == "udp" else 65535, prefer_truncation=True)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        outer = self

        class UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                out = outer.answer(data, "udp")
                if out is not None:
                    self.transport.sendto(out, addr)

        for attempt in range(20):  # a free UDP port whose TCP twin is free too
            self._udp, _ = await loop.create_datagram_endpoint(UDP, local_addr=("127.0.0.1", 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
                return
            except OSError:
                self._udp.close()
                if attempt == 19:
                    raise

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            n = int.from_bytes(await reader.readexactly(2), "big")
            out = self.answer(await reader.readexactly(n), "tcp")
            if out is not None:
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        finally:
            writer.close()

    def stop(self) -> None:
        self._udp.close()
        assert self._tcp is not None
        self._tcp.close()


def closed_port() -> int:
    """A loopback UDP port nobody listens on (the kernel answers port unreachable)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------ harness


@dataclass
class Harness:
    client: Client
    factory: InformerFactory
    dns: ClusterDNS
    upstream: FakeUpstream
    ns: str

    async def ask(self, name: str, qtype: str = "A", *, tcp: bool = False, port: int | None = None,
                  **query: Any) -> dns.message.Message:
        """One query through dnspython's blocking client, in a thread (the
        server runs on this event loop)."""
        q = dns.message.make_query(name, qtype, **query)
        fn = dns.query.tcp if tcp else dns.query.udp
        r = await asyncio.to_thread(fn, q, "127.0.0.1", timeout=5, port=port or self.dns.port)
        assert r.id == q.id
        return r

    async def eventually(self, name: str, qtype: str, check: Callable[[dns.message.Message], bool],
                         ) -> dns.message.Message:
        """Ask until `check` holds: the informers see API changes a moment later."""
        r = None
        for _ in range(200):
            r = await self.ask(name, qtype)
            if check(r):
                return r
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} {qtype}: last answer\n{r}")

    async def create(self, obj: dict) -> dict:
        api = "v1" if obj["apiVersion"] == "v1" else obj["apiVersion"]
        plural = {"Service": "services", "EndpointSlice": "endpointslices"}[obj["kind"]]
        return await self.client.resource(api, plural).create(obj, self.ns)


def rdata(r: dns.message.Message, qtype: str = "A", section: str = "answer") -> list[str]:
    t = dns.rdatatype.from_text(qtype)
    return sorted(rd.to_text() for rrset in getattr(r, section) if rrset.rdtype == t for rd in rrset)


def has_soa(r: dns.message.Message) -> bool:
    return [x.rdtype for x in r.authority] == [dns.rdatatype.SOA]


def svc(name: str, ports: list[dict] | None = None, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": ports or [{"name": "http", "port": 80}], **spec}}


def eps(name: str, service: str, endpoints: list[dict], ports: list[dict] | None = None) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def ep(ip: str, ready: bool = True, hostname: str | None = None) -> dict:
    out: dict = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


@pytest.fixture
async def h(server: Server, namespace: str) -> AsyncIterator[Harness]:
    upstream = FakeUpstream()
    await upstream.start()
    client = Client(load_kubeconfig(server.kubeconfig))
    factory = InformerFactory(client)
    server_ = ClusterDNS(factory.informer("v1", "services"),
                         factory.informer("discovery.k8s.io/v1", "endpointslices"),
                         upstreams=[f"127.0.0.1:{upstream.port}"], forward_timeout=1)
    factory.start()
    await factory.wait_synced(10)
    await server_.start("127.0.0.1", 0)
    try:
        yield Harness(client, factory, server_, upstream, namespace)
    finally:
        await server_.stop()
        await factory.stop()
        await client.close()
        upstream.stop()


# ------------------------------------------------------------ tests


async def test_cluster_ip_services(h: Harness) -> None:
    made = await h.create(svc("web", [{"name": "http", "port": 80},
                                      {"name": "dns", "port": 53, "protocol": "UDP"}]))
    ip = made["spec"]["clusterIP"]
    name = f"web.{h.ns}.svc.cluster.local"
    r = await h.eventually(name, "A", lambda r: rdata(r) == [ip])
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and r.answer[0].ttl == 5
    assert rdata(await h.ask(name, "A", tcp=True)) == [ip]
    # an IPv4-only Service: AAAA is NOERROR with no answer, and the SOA
    r = await h.ask(name, "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and has_soa(r)
    # SRV for named ports, protocol lowercased, the target's address as glue
    r = await h.ask(f"_dns._udp.{name}", "SRV")
    assert rdata(r, "SRV") == [f"0 100 53 {name}."]
    assert rdata(r, "A", "additional") == [ip]
    r = await h.ask(name, "SRV")
    assert rdata(r, "SRV") == [f"0 50 53 {name}.", f"0 50 80 {name}."]
    # PTR of the cluster IP
    rev = dns.name.from_text(".".join(reversed(ip.split("."))) + ".in-addr.arpa")
    assert rdata(await h.ask(rev.to_text(), "PTR"), "PTR") == [f"{name}."]


async def test_search_path_kubernetes_default(h: Harness) -> None:
    await h.create(svc("anything"))  # so that the test's namespace holds a Service
    await h.eventually(f"anything.{h.ns}.svc.cluster.local", "A", lambda r: bool(r.answer))
    # what a pod in the namespace asks for `kubernetes.default` (ndots:5 search path)
    r = await h.ask(f"kubernetes.default.{h.ns}.svc.cluster.local")
    assert r.rcode() == dns.rcode.NXDOMAIN and has_soa(r)
    r = await h.ask("kubernetes.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NOERROR and len(rdata(r)) == 1
    r = await h.ask(f"missing.{h.ns}.svc.cluster.local", tcp=True)
    assert r.rcode() == dns.rcode.NXDOMAIN and has_soa(r)
    assert r.authority[0].name == dns.name.from_text("cluster.local")


async def test_pod_records(h: Harness) -> None:
    r = await h.ask(f"10-244-3-7.{h.ns}.pod.cluster.local")
    assert rdata(r) == ["10.244.3.7"]
    r = await h.ask(f"not-an-ip.{h.ns}.pod.cluster.local")
    assert r.rcode() == dns.rcode.NXDOMAIN and has_soa(r)


async def test_headless_service_with_hostnames(h: Harness) -> None:
    await h.create(svc("db", [{"name": "pg", "port": 5432}], clusterIP="None"))
    await h.create(eps("db-1", "db", [ep("10.244.1.1", hostname="db-0"), ep("10.244.1.2", hostname="db-1"),
                                      ep("10.244.1.3", ready=False, hostname="db-2")],
                       ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    name = f"db.{h.ns}.svc.cluster.local"
    await h.eventually(name, "A", lambda r: rdata(r) == ["10.244.1.1", "10.244.1.2"])
    assert rdata(await h.ask(f"db-0.{name}")) == ["10.244.1.1"]
    assert (await h.ask(f"db-2.{name}")).rcode() == dns.rcode.NXDOMAIN  # not ready
    r = await h.ask(f"_pg._tcp.{name}", "SRV")
    assert rdata(r, "SRV") == [f"0 50 5432 db-0.{name}.", f"0 50 5432 db-1.{name}."]
    assert rdata(r, "A", "additional") == ["10.244.1.1", "10.244.1.2"]
    assert rdata(await h.ask("1.1.244.10.in-addr.arpa", "PTR"), "PTR") == [f"db-0.{name}."]
    # the pod behind db-1 becomes unready, db-2 ready: answers follow the slice
    await h.client.resource("discovery.k8s.io/v1", "endpointslices").patch(
        "db-1", {"endpoints": [ep("10.244.1.1", hostname="db-0"), ep("10.244.1.2", False, "db-1"),
                               ep("10.244.1.3", hostname="db-2")]}, h.ns)
    await h.eventually(name, "A", lambda r: rdata(r) == ["10.244.1.1", "10.244.1.3"])
    assert rdata(await h.ask(f"db-2.{name}")) == ["10.244.1.3"]


async def test_external_name_is_a_cname_resolved_upstream(h: Harness) -> None:
    await h.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                    "spec": {"type": "ExternalName", "externalName": "db.example.com"}})
    name = f"ext.{h.ns}.svc.cluster.local"
    r = await h.eventually(name, "A", lambda r: bool(r.answer))
    assert rdata(r, "CNAME") == ["db.example.com."]
    assert rdata(r) == ["192.0.2.10"]  # the target, as the upstream answers it
    r = await h.ask(name, "CNAME")
    assert rdata(r, "CNAME") == ["db.example.com."] and not rdata(r)


async def test_forwarding_to_upstream(h: Harness) -> None:
    r = await h.ask("www.example.org")
    assert rdata(r) == ["192.0.2.10"] and not r.flags & dns.flags.AA
    assert ("www.example.org.", "udp") in h.upstream.asked
    r = await h.ask("nothing.example.net")
    assert r.rcode() == dns.rcode.NXDOMAIN
    # truncated over UDP upstream: asked again over TCP; the client gets what fits
    r = await h.ask("big.example.org", "TXT", use_edns=0, payload=4096)
    assert len(rdata(r, "TXT")) == 10 and not r.flags & dns.flags.TC
    assert ("big.example.org.", "tcp") in h.upstream.asked
    r = await h.ask("big.example.org", "TXT")  # no EDNS: 512 bytes at most
    assert r.flags & dns.flags.TC
    r = await h.ask("big.example.org", "TXT", tcp=True)
    assert len(rdata(r, "TXT")) == 10


async def test_upstream_failover_and_servfail(h: Harness) -> None:
    informers = (h.factory.informer("v1", "services"),
                 h.factory.informer("discovery.k8s.io/v1", "endpointslices"))
    good = f"127.0.0.1:{h.upstream.port}"
    dead = f"127.0.0.1:{closed_port()}"
    second = ClusterDNS(*informers, upstreams=[dead, good], forward_timeout=0.5)
    await second.start("127.0.0.1", 0)
    try:
        assert rdata(await h.ask("www.example.org", port=second.port)) == ["192.0.2.10"]
    finally:
        await second.stop()
    # every upstream fails (one refuses, one never answers): SERVFAIL
    third = ClusterDNS(*informers, upstreams=[dead, good], forward_timeout=0.3)
    await third.start("127.0.0.1", 0)
    try:
        r = await h.ask("silent.example.org", port=third.port)
        assert r.rcode() == dns.rcode.SERVFAIL
    finally:
        await third.stop()


async def test_refused_outside_allowed_networks(h: Harness) -> None:
    informers = (h.factory.informer("v1", "services"),
                 h.factory.informer("discovery.k8s.io/v1", "endpointslices"))
    closed = ClusterDNS(*informers, upstreams=[f"127.0.0.1:{h.upstream.port}"], allow_loopback=False,
                        allowed=["192.0.2.0/24"])
    await closed.start("127.0.0.1", 0)
    asked = len(h.upstream.asked)
    try:
        for name, tcp in (("www.example.org", False), ("kubernetes.default.svc.cluster.local", False),
                          ("www.example.org", True)):
            r = await h.ask(name, tcp=tcp, port=closed.port)
            assert r.rcode() == dns.rcode.REFUSED and not r.answer
        assert len(h.upstream.asked) == asked  # nothing was forwarded
    finally:
        await closed.stop()


async def test_deleted_service_disappears(h: Harness) -> None:
    made = await h.create(svc("gone"))
    ip = made["spec"]["clusterIP"]
    name = f"gone.{h.ns}.svc.cluster.local"
    await h.eventually(name, "A", lambda r: rdata(r) == [ip])
    await h.client.resource("v1", "services").delete("gone", h.ns)
    r = await h.eventually(name, "A", lambda r: r.rcode() == dns.rcode.NXDOMAIN)
    assert has_soa(r)
    rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    assert (await h.ask(rev, "PTR")).rcode() == dns.rcode.NXDOMAIN


async def test_big_answers_are_truncated_over_udp(h: Harness) -> None:
    await h.create(svc("many", clusterIP="None"))
    await h.create(eps("many-1", "many", [ep(f"10.244.9.{i}") for i in range(1, 61)]))
    name = f"many.{h.ns}.svc.cluster.local"
    r = await h.eventually(name, "A", lambda r: bool(r.flags & dns.flags.TC))
    assert 0 < len(rdata(r)) < 60 and len(r.to_wire()) <= 512  # what fits, for clients without TCP
    assert len(rdata(await h.ask(name, tcp=True))) == 60
    r = await h.ask(name, use_edns=0, payload=4096)
    assert len(rdata(r)) == 60 and not r.flags & dns.flags.TC


async def test_servfail_until_the_informers_have_listed(server: Server) -> None:
    async with Client(load_kubeconfig(server.kubeconfig)) as client:
        # informers never started: the cache is empty, not known to be empty
        early = ClusterDNS(Informer(client.resource("v1", "services")),
                           Informer(client.resource("discovery.k8s.io/v1", "endpointslices")),
                           upstreams=[])
        await early.start("127.0.0.1", 0)
        try:
            q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
            r = await asyncio.to_thread(dns.query.udp, q, "127.0.0.1", timeout=5, port=early.port)
            assert r.rcode() == dns.rcode.SERVFAIL
        finally:
            await early.stop()


async def test_run_dns_from_a_kubeconfig(server: Server, namespace: str) -> None:
    """The `pinnace dns` entry point: its own client and informers from the kubeconfig."""
    upstream = FakeUpstream()
    await upstream.start()
    bound: asyncio.Future[ClusterDNS] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_dns(str(server.kubeconfig), ("127.0.0.1", 0),
                                       upstreams=[f"127.0.0.1:{upstream.port}"],
                                       on_started=bound.set_result))
    try:
        dns_server = await asyncio.wait_for(bound, 10)
        async with Client(load_kubeconfig(server.kubeconfig)) as client:
            h = Harness(client, InformerFactory(client), dns_server, upstream, namespace)
            r = await h.eventually("kubernetes.default.svc.cluster.local", "A", lambda r: bool(r.answer))
            assert r.rcode() == dns.rcode.NOERROR
            assert rdata(await h.ask("www.example.org", tcp=True)) == ["192.0.2.10"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        upstream.stop()
