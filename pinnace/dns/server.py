"""The cluster DNS server: UDP and TCP on one address, cluster names answered
from `ClusterRecords`, everything else forwarded to the host's resolvers
(CoreDNS's `kubernetes` and `forward` plugins in one process).

Guarantees:
- clients outside the allowed networks (pod and service ranges, loopback,
  the nodes' InternalIPs when given a node informer, and whatever else the
  caller passes) get REFUSED for every query, so the server is never an open
  resolver nor an oracle for cluster names;
- answers for the cluster's zones never wait on the network: they are built
  from the informers' caches on the event loop, and the rendered bytes are
  kept per query (minus its ID) until the data changes;
- until both informers have listed once, cluster names are answered
  SERVFAIL (clients retry) rather than with a negative answer they would cache;
- forwarded queries keep the client's transaction ID; UDP first, TCP when
  the answer is truncated; SERVFAIL when every upstream fails; the server's
  own address is never an upstream, nor (from resolv.conf) an address in
  the service range, which would lead back here through kube-dns (no loops);
- zone transfers (AXFR, IXFR) of our zones are refused;
- UDP answers fit the client's limit (512 bytes, or its EDNS payload size up
  to 4096), truncated with the TC bit otherwise (keeping the answer records
  that fit); TCP is length-prefixed, any number of queries per connection,
  closed after `IDLE_TIMEOUT` of silence.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pinnace.client import Client, Informer, InformerFactory, auto_config

from .records import DEFAULT_TTL, ClusterRecords

log = logging.getLogger("pinnace.dns")

LOOPBACK = ("127.0.0.0/8", "::1/128")
DEFAULT_SERVICE_CIDRS = ("10.96.0.0/12",)
DEFAULT_POD_CIDRS = ("10.244.0.0/16",)
OUR_PAYLOAD = 1232  # the EDNS size we advertise (DNS flag day 2020)
MAX_UDP = 4096  # never send a bigger UDP answer, whatever the client offers
IDLE_TIMEOUT = 10.0
MAX_TCP_CLIENTS = 512
MAX_FORWARDS = 1024  # queries waiting on upstreams at once; more get SERVFAIL
CACHE_ENTRIES = 8192
ZONE_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)  # refused, as CoreDNS does without `transfer`

Address = tuple[str, int]


def parse_address(text: str, default_port: int = 53) -> Address:
    """"1.2.3.4", "1.2.3.4:53", "::1", "[::1]:53" -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default_port


def read_resolv_conf(path: str | Path = "/etc/resolv.conf") -> list[Address]:
    """The `nameserver` lines of a resolv.conf, as (address, 53)."""
    out: list[Address] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                ipaddress.ip_address(parts[1].split("%", 1)[0])
            except ValueError:
                continue
            out.append((parts[1], 53))
    return out


def _in_networks(ip: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if any(addr in net for net in networks):
        log.warning("not forwarding to %s: it is in the service range (the cluster DNS itself)", ip)
        return True
    return False


def _canonical_ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address without its zone, IPv4-mapped IPv6 as IPv4; None if not one."""
    try:
        ip = ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_local(ip: str) -> bool:
    """The address belongs to this host (binding to it works)."""
    try:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def fit(msg: dns.message.Message, limit: int) -> bytes:
    """`msg` in at most `limit` bytes. Too big: TC set, authority and
    additional dropped, and as many answer records kept as fit, splitting an
    RRset if need be (as CoreDNS does), so a client that never retries over
    TCP (musl before 1.2.4) still gets some addresses. Changes `msg`."""
    try:
        return msg.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    answer = msg.answer
    total = sum(len(rrset) for rrset in answer)
    msg.flags |= dns.flags.TC
    msg.authority, msg.additional = [], []
    best = b""
    lo, hi = 0, total  # find the most answer records that fit
    while lo <= hi:
        mid = (lo + hi) // 2
        msg.answer = _first_records(answer, mid)
        try:
            best = msg.to_wire(max_size=limit)
            lo = mid + 1
        except dns.exception.TooBig:
            hi = mid - 1
    return best or msg.to_wire(max_size=limit, prefer_truncation=True)


def _first_records(rrsets: list[dns.rrset.RRset], n: int) -> list[dns.rrset.RRset]:
    out = []
    for rrset in rrsets:
        if n <= 0:
            break
        if len(rrset) <= n:
            out.append(rrset)
        else:
            out.append(dns.rrset.from_rdata_list(rrset.name, rrset.ttl, list(rrset)[:n]))
        n -= len(rrset)
    return out


@dataclass(slots=True)
class _Forward:
    """A query that must go upstream: the client's own, or (``chase``) the
    target of a CNAME out of our zones, whose answers join ``response``."""
    query: dns.message.Message
    limit: int
    response: dns.message.Message | None = None


class ClusterDNS:
    """The DNS server. `services` and `slices`: informers on v1 services and
    discovery.k8s.io/v1 endpointslices (the caller starts them, typically
    from a shared InformerFactory); `domain`: the cluster domain;
    `allowed`: CIDRs whose clients are answered besides the pod and service
    ranges, loopback and the nodes (all others get REFUSED); `upstreams`: where other names go ("ip", "ip:port",
    "[ip6]:port"), by default the nameservers of `resolv_conf`;
    `service_cidrs` / `pod_cidrs`: the ranges whose reverse zones we serve
    and whose clients we answer; `ttl`: seconds on every answer;
    `forward_timeout`: seconds to wait for each upstream; `allow_loopback`:
    answer clients on loopback (the host itself); `nodes`: an informer on
    v1 nodes, whose InternalIP addresses are allowed too (pods on other
    nodes reach us masqueraded to their node's address, and hosts and
    hostNetwork pods ask from it)."""

    def __init__(self, services: Informer, slices: Informer, *, domain: str = "cluster.local",
                 allowed: Iterable[str] = (), upstreams: Sequence[str | Address] | None = None,
                 service_cidrs: Iterable[str] = DEFAULT_SERVICE_CIDRS,
                 pod_cidrs: Iterable[str] = DEFAULT_POD_CIDRS, ttl: int = DEFAULT_TTL,
                 forward_timeout: float = 2.0, resolv_conf: str | Path = "/etc/resolv.conf",
                 allow_loopback: bool = True, nodes: Informer | None = None):
        service_cidrs, pod_cidrs = list(service_cidrs), list(pod_cidrs)
        self.records = ClusterRecords(domain, [*service_cidrs, *pod_cidrs], ttl)
        self.services, self.slices = services, slices
        self.allowed = [ipaddress.ip_network(c.strip(), strict=False)
                        for c in [*pod_cidrs, *service_cidrs, *(LOOPBACK if allow_loopback else ()),
                                  *allowed] if c.strip()]
        if upstreams is None:
            # A host whose resolv.conf names the kube-dns Service (or any
            # address in the service range) would send us our own queries back.
            service_nets = [ipaddress.ip_network(c.strip(), strict=False) for c in service_cidrs if c.strip()]
            self.upstreams = [u for u in read_resolv_conf(resolv_conf)
                              if not _in_networks(u[0], service_nets)]
        else:
            self.upstreams = [u if isinstance(u, tuple) else parse_address(u) for u in upstreams]
        self.forward_timeout = forward_timeout
        self.host, self.port = "", 0
        self._allowed_cache: dict[str, bool] = {}
        self._cache: dict[bytes, bytes] = {}
        self._cache_generation = -1
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._forwarding = 0
        self._tcp_clients = 0
        self._node_ips: dict[str, frozenset[str]] = {}
        self._node_ip_set: frozenset[str] = frozenset()
        if nodes is not None:
            nodes.add_handler(self._set_node, lambda old, new: self._set_node(new), self._delete_node)
        r = self.records
        services.add_handler(r.set_service, lambda old, new: r.set_service(new), r.delete_service)
        slices.add_handler(r.set_slice, lambda old, new: r.set_slice(new), r.delete_slice)

    def _set_node(self, node: dict[str, Any]) -> None:
        ips = frozenset(str(ip) for ip in (_canonical_ip(a.get("address"))
                                           for a in (node.get("status") or {}).get("addresses") or ()
                                           if a.get("type") == "InternalIP") if ip is not None)
        name = node["metadata"]["name"]
        if self._node_ips.get(name) != ips:
            self._node_ips[name] = ips
            self._nodes_changed()

    def _delete_node(self, node: dict[str, Any]) -> None:
        if self._node_ips.pop(node["metadata"]["name"], None) is not None:
            self._nodes_changed()

    def _nodes_changed(self) -> None:
        self._node_ip_set = frozenset().union(*self._node_ips.values())
        self._allowed_cache.clear()

    @property
    def ready(self) -> bool:
        return self.services.synced.is_set() and self.slices.synced.is_set()

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 53) -> None:
        """Bind UDP and TCP on host:port (port 0: a free port both share)."""
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self),
                                                         local_addr=(host, port))
            bound = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound,
                                                       reuse_address=True)
            except OSError:
                udp.close()
                if port or attempt == 19:
                    raise
                continue
            self._udp = udp  # type: ignore[assignment]
            self.host, self.port = host, bound
            break
        self.upstreams = [u for u in self.upstreams if not self._is_self(u)]
        if not self.upstreams:
            log.warning("cluster DNS has no upstream resolvers: other names get SERVFAIL")
        log.info("cluster DNS for %s on %s port %d (udp, tcp), forwarding to %s",
                 self.records.domain, host, self.port,
                 ", ".join(f"{h}:{p}" for h, p in self.upstreams) or "nobody")

    def _is_self(self, upstream: Address) -> bool:
        ip, port = upstream
        if port != self.port:
            return False
        wildcard = self.host in ("", "0.0.0.0", "::")
        if ip == self.host or (wildcard and _is_local(ip.split("%", 1)[0])):
            log.warning("not forwarding to %s:%d: that is this server", ip, port)
            return True
        return False

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        tcp, self._tcp = self._tcp, None
        if tcp is not None:
            tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if tcp is not None:
            await tcp.wait_closed()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- transports -------------------------------------------------------------------

    def _datagram(self, data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        out = self.respond(data, addr[0], tcp=False)
        if isinstance(out, bytes):
            transport.sendto(out, addr)
        elif out is not None:
            self._spawn(self._forward_then(out, lambda b: transport.sendto(b, addr)))

    async def _forward_then(self, job: _Forward, send: Any) -> None:
        send(await self.complete(job))

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("", 0)
        self._tcp_clients += 1
        try:
            if self._tcp_clients > MAX_TCP_CLIENTS:
                return
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), IDLE_TIMEOUT)
                data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")),
                                              IDLE_TIMEOUT)
                out = self.respond(data, peer[0], tcp=True)
                if out is None:
                    continue
                if not isinstance(out, bytes):
                    out = await self.complete(out)
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_clients -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    # -- answering ----------------------------------------------------------------------

    def respond(self, wire: bytes, client: str, tcp: bool) -> bytes | _Forward | None:
        """The answer to one query from `client`: bytes to send, a `_Forward`
        to finish with `complete`, or None to stay silent (not a query)."""
        if len(wire) < 12 or wire[2] & 0x80:  # too short for a header, or a response
            return None
        if not self._client_allowed(client):
            return self._refuse(wire)
        if self.records.generation != self._cache_generation:
            self._cache.clear()
            self._cache_generation = self.records.generation
        key = (b"T" if tcp else b"U") + wire[2:]
        hit = self._cache.get(key)
        if hit is not None:
            return wire[:2] + hit
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None
        except Exception:
            return self._error(wire, dns.rcode.FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            return self._error(wire, dns.rcode.NOTIMP, query)
        if len(query.question) != 1:
            return self._error(wire, dns.rcode.FORMERR, query)
        limit = 65535 if tcp else (min(max(512, query.payload), MAX_UDP) if query.edns >= 0 else 512)
        q = query.question[0]
        if self.records.zone_of(q.name) is None:
            return _Forward(query, limit)
        if q.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY) or q.rdtype in ZONE_TRANSFERS:
            return self._error(wire, dns.rcode.REFUSED, query)
        if not self.ready:
            return self._error(wire, dns.rcode.SERVFAIL, query)
        ans = self.records.answer(q.name, q.rdtype)
        resp = dns.message.make_response(query, recursion_available=True, our_payload=OUR_PAYLOAD)
        resp.flags |= dns.flags.AA
        resp.set_rcode(ans.rcode)
        resp.answer, resp.authority, resp.additional = ans.answer, ans.authority, ans.additional
        if ans.cname_target is not None:
            chase = dns.message.make_query(ans.cname_target, q.rdtype)
            return _Forward(chase, limit, resp)
        out = fit(resp, limit)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = out[2:]
        return out

    async def complete(self, job: _Forward) -> bytes:
        """Finish a `_Forward`: ask the upstreams, fit the answer to the client."""
        if self._forwarding >= MAX_FORWARDS:
            resp = job.response or self._servfail(job.query)
            return fit(resp, job.limit)
        self._forwarding += 1
        try:
            upstream = await self._ask_upstreams(job.query)
        finally:
            self._forwarding -= 1
        if job.response is not None:  # a CNAME chased: the target's records join our answer
            if upstream is not None and upstream.rcode() == dns.rcode.NOERROR:
                job.response.answer.extend(upstream.answer)
            return fit(job.response, job.limit)
        resp = upstream or self._servfail(job.query)
        resp.id = job.query.id
        return fit(resp, job.limit)

    async def _ask_upstreams(self, query: dns.message.Message) -> dns.message.Message | None:
        """The first good answer of the upstreams in order; a SERVFAIL or
        REFUSED is kept only if no later upstream does better."""
        fallback = None
        for host, port in self.upstreams:
            try:
                resp, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, timeout=self.forward_timeout, port=port)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # timeouts, refused connections, bad answers: try the next
                log.debug("upstream %s:%d failed for %s: %r", host, port, query.question[0].name, e)
                continue
            if resp.rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                fallback = resp
                continue
            return resp
        return fallback

    def _client_allowed(self, client: str) -> bool:
        ok = self._allowed_cache.get(client)
        if ok is None:
            ip = _canonical_ip(client)
            if ip is None:
                return False
            ok = str(ip) in self._node_ip_set or any(ip in net for net in self.allowed)
            if len(self._allowed_cache) >= CACHE_ENTRIES:
                self._allowed_cache.clear()
            self._allowed_cache[client] = ok
        return ok

    @classmethod
    def _refuse(cls, wire: bytes) -> bytes:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return cls._error(wire, dns.rcode.REFUSED)
        return cls._error(wire, dns.rcode.REFUSED, query)

    @staticmethod
    def _servfail(query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query, recursion_available=True, our_payload=OUR_PAYLOAD)
        resp.set_rcode(dns.rcode.SERVFAIL)
        return resp

    @staticmethod
    def _error(wire: bytes, rcode: dns.rcode.Rcode, query: dns.message.Message | None = None) -> bytes:
        if query is not None:
            resp = dns.message.make_response(query, recursion_available=True,
                                              our_payload=OUR_PAYLOAD)
        else:  # unparsable: a bare header with the client's ID
            resp = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
            resp.flags = dns.flags.QR | (int.from_bytes(wire[2:4], "big") & dns.flags.RD)
        resp.set_rcode(rcode)
        return resp.to_wire(max_size=512, prefer_truncation=True)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDNS):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is not None:
            self.server._datagram(data, addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for answers to clients gone away: nothing to do.
        log.debug("udp: %r", exc)


async def run_dns(kubeconfig: str | None, listen: Address = ("0.0.0.0", 53),
                  domain: str = "cluster.local", *, allowed: Iterable[str] = (),
                  upstreams: Sequence[str] | None = None,
                  service_cidrs: Iterable[str] = DEFAULT_SERVICE_CIDRS,
                  pod_cidrs: Iterable[str] = DEFAULT_POD_CIDRS, ttl: int = DEFAULT_TTL,
                  resolv_conf: str = "/etc/resolv.conf",
                  on_started: Callable[[ClusterDNS], Any] | None = None,
                  publish: Callable[[Client, int], Awaitable[None]] | None = None) -> None:
    """`pinnace dns`: a client from `kubeconfig` (as `auto_config` finds one:
    the file, $KUBECONFIG or ~/.kube/config, else the in-cluster config),
    informers on Services and EndpointSlices, and a ClusterDNS on `listen`
    (port 0: any free port) until cancelled. `on_started(server)` is called
    once the sockets are bound (`server.port` is the port); `publish(client,
    port)` then tells the cluster where to find it (service.publish). The
    other parameters are ClusterDNS's."""
    config = auto_config(kubeconfig)
    config.user_agent = "pinnace-dns"
    async with Client(config) as client:
        factory = InformerFactory(client)
        server = ClusterDNS(factory.informer("v1", "services"),
                            factory.informer("discovery.k8s.io/v1", "endpointslices"),
                            domain=domain, allowed=allowed, upstreams=upstreams,
                            service_cidrs=service_cidrs, pod_cidrs=pod_cidrs, ttl=ttl,
                            resolv_conf=resolv_conf, nodes=factory.informer("v1", "nodes"))
        factory.start()
        try:
            await server.start(*listen)
            if on_started is not None:
                on_started(server)
            if publish is not None:
                await publish(client, server.port)
            await asyncio.Event().wait()
        finally:
            await server.stop()
            await factory.stop()


__all__ = ["ClusterDNS", "parse_address", "read_resolv_conf", "run_dns"]
