"""The cluster's DNS data: names -> answers, from cached Services and
EndpointSlices, as CoreDNS's `kubernetes` plugin serves them (the Kubernetes
DNS specification, plus CoreDNS's `pods insecure` records).

No I/O here: the server feeds Service and EndpointSlice objects in (from
informer handlers) and asks `answer(name, type)`. Guarantees:
- every query is answered from dicts keyed by name or by IP; the work done
  per change is bounded by the size of the one Service it touches (its
  view is rebuilt), never by the size of the cluster;
- names that do not exist under a zone we serve are NXDOMAIN, names that
  exist without the asked type are NOERROR with no answer (NODATA); both carry
  the zone's SOA in the authority section so resolvers cache them for the
  SOA minimum (RFC 2308);
- the view of a Service follows its Service and EndpointSlices in any order
  of arrival: slices seen before their Service wait for it.

Zones: the cluster domain (``svc``, ``pod`` and ``dns`` under it) and the
reverse zones of the service and pod ranges (octet- or nibble-aligned zones
covering each CIDR, so 10.96.0.0/12 is 96.10.in-addr.arpa ... 111.10.in-addr.arpa).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# CoreDNS's kubernetes plugin answers with TTL 5 s by default; short enough
# that a changed Service is seen quickly, long enough to absorb bursts.
DEFAULT_TTL = 5
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# `ns.dns.<domain>` (the zone's NS) resolves to this Service's cluster IPs.
DNS_SERVICE: Key = ("kube-system", "kube-dns")
PROTOCOLS = ("tcp", "udp", "sctp")

IN = dns.rdataclass.IN
TA, TAAAA, TCNAME, TPTR = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.CNAME, dns.rdatatype.PTR
TSRV, TSOA, TNS, TANY = dns.rdatatype.SRV, dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.ANY
IN_ADDR = dns.name.from_text("in-addr.arpa.")
IP6 = dns.name.from_text("ip6.arpa.")


# ---------------------------------------------------------------- the views

@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str  # lowercased: tcp, udp, sctp
    port: int


@dataclass(slots=True)
class ServiceView:
    """What one Service contributes to the zone, rebuilt when it or one of
    its EndpointSlices changes."""
    namespace: str
    name: str
    kind: str  # "ClusterIP" (incl. NodePort, LoadBalancer), "Headless", "ExternalName"
    cluster_ips: tuple[IP, ...] = ()
    external_name: str = ""
    ports: tuple[Port, ...] = ()
    # Ready endpoints: their names (hostname, else the dashed address) ->
    # addresses, and (endpoint name, port) pairs from each slice's ports.
    endpoints: dict[str, tuple[IP, ...]] = field(default_factory=dict)
    endpoint_ports: tuple[tuple[str, Port], ...] = ()

    def addresses(self) -> tuple[IP, ...]:
        """What the Service's own name resolves to."""
        if self.kind == "Headless":
            seen: dict[IP, None] = {}
            for ips in self.endpoints.values():
                seen.update(dict.fromkeys(ips))
            return tuple(seen)
        return self.cluster_ips


@dataclass(frozen=True, slots=True)
class SliceView:
    service: str
    ports: tuple[Port, ...]
    # (addresses, hostname, ready)
    endpoints: tuple[tuple[tuple[IP, ...], str, bool], ...]


def _ip(text: Any) -> IP | None:
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        return None


def dashed(ip: IP) -> str:
    """1.2.3.4 -> 1-2-3-4, fd00::1 -> fd00--1 (CoreDNS's endpoint and pod names)."""
    return str(ip).replace(".", "-").replace(":", "-")


def undashed(label: str) -> IP | None:
    if label.count("-") == 3:
        ip = _ip(label.replace("-", "."))
        if ip is not None:
            return ip
    ip = _ip(label.replace("-", ":"))
    return ip if isinstance(ip, ipaddress.IPv6Address) else None


def _ports(raw: Iterable[Obj] | None, number_key: str) -> tuple[Port, ...]:
    out = []
    for p in raw or ():
        n = p.get(number_key)
        if isinstance(n, int):
            out.append(Port(str(p.get("name") or "").lower(), str(p.get("protocol") or "TCP").lower(), n))
    return tuple(out)


def parse_slice(sl: Obj) -> SliceView | None:
    """The DNS-relevant part of an EndpointSlice; None for slices that belong
    to no Service or carry FQDN addresses."""
    meta = sl.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or sl.get("addressType") not in ("IPv4", "IPv6"):
        return None
    eps = []
    for ep in sl.get("endpoints") or ():
        ips = tuple(ip for ip in map(_ip, ep.get("addresses") or ()) if ip is not None)
        if not ips:
            continue
        # An unset `ready` means unknown, which consumers treat as ready (API docs).
        ready = (ep.get("conditions") or {}).get("ready") is not False
        eps.append((ips, str(ep.get("hostname") or "").lower(), ready))
    return SliceView(str(service), _ports(sl.get("ports"), "port"), tuple(eps))


def build_view(svc: Obj, slices: Iterable[SliceView]) -> ServiceView:
    meta, spec = svc["metadata"], svc.get("spec") or {}
    view = ServiceView(meta["namespace"], meta["name"], "ClusterIP",
                       ports=_ports(spec.get("ports"), "port"))
    if spec.get("type") == "ExternalName":
        view.kind = "ExternalName"
        view.external_name = str(spec.get("externalName") or "").rstrip(".")
        return view
    raw_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if "None" in raw_ips:
        view.kind = "Headless"
    else:
        view.cluster_ips = tuple(ip for ip in map(_ip, raw_ips) if ip is not None)
    publish = bool(spec.get("publishNotReadyAddresses"))
    endpoints: dict[str, dict[IP, None]] = {}
    eports: dict[tuple[str, Port], None] = {}
    for sl in slices:
        for ips, hostname, ready in sl.endpoints:
            if not (ready or publish):
                continue
            # An address in several slices (a slice being replaced) counts once.
            for ip in ips:
                label = hostname or dashed(ip)
                endpoints.setdefault(label, {})[ip] = None
                for port in sl.ports:
                    eports[(label, port)] = None
    view.endpoints = {label: tuple(ips) for label, ips in endpoints.items()}
    view.endpoint_ports = tuple(eports)
    return view


# ---------------------------------------------------------------- answers

@dataclass(slots=True)
class Answer:
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    # A CNAME pointing out of our zones: the caller may resolve it upstream.
    cname_target: dns.name.Name | None = None


@dataclass(slots=True)
class _Node:
    """A name that exists: its records by type, and glue for SRV targets."""
    records: dict[int, list[dns.rdata.Rdata]] = field(default_factory=dict)
    glue: dict[dns.name.Name, list[dns.rdata.Rdata]] = field(default_factory=dict)


@lru_cache(maxsize=65536)  # rdata are immutable: share them
def _addr_rdata(ip: IP) -> dns.rdata.Rdata:
    return A(IN, TA, str(ip)) if ip.version == 4 else AAAA(IN, TAAAA, str(ip))


def _add_addresses(node: _Node, ips: Iterable[IP]) -> None:
    for ip in ips:
        node.records.setdefault(TA if ip.version == 4 else TAAAA, []).append(_addr_rdata(ip))


def _weight(n: int) -> int:
    return max(1, round(100 / n)) if n else 0


class ClusterRecords:
    """The zone data. `domain`: the cluster domain; `reverse_cidrs`: the
    service and pod ranges whose reverse zones are ours; `ttl`: seconds on
    every answer and the SOA minimum (the negative-caching time)."""

    def __init__(self, domain: str = "cluster.local",
                 reverse_cidrs: Iterable[str] = ("10.96.0.0/12", "10.244.0.0/16"),
                 ttl: int = DEFAULT_TTL):
        self.domain = dns.name.from_text(domain.strip(".") + ".")
        self.ttl = ttl
        self.reverse = [ipaddress.ip_network(c.strip(), strict=False) for c in reverse_cidrs if c.strip()]
        self.ns_name = dns.name.from_text("ns.dns", self.domain)
        self.hostmaster = dns.name.from_text("hostmaster", self.domain)
        # Bumped on every change: resolvers see a new SOA serial, the server
        # drops its cached responses.
        self.serial = int(time.time())
        self.generation = 0
        self._services: dict[Key, Obj] = {}
        self._views: dict[Key, ServiceView] = {}
        self._slices: dict[Key, SliceView] = {}
        self._slices_of: dict[Key, set[str]] = {}
        self._per_namespace: dict[str, int] = {}
        # ip -> service key -> PTR targets the service contributes
        self._ptr: dict[IP, dict[Key, set[dns.name.Name]]] = {}

    # -- feeding ------------------------------------------------------------

    def set_service(self, svc: Obj) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        self._services[key] = svc
        self._rebuild(key)

    def delete_service(self, svc: Obj) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        if self._services.pop(key, None) is not None:
            self._rebuild(key)

    def set_slice(self, sl: Obj) -> None:
        meta = sl["metadata"]
        key = (meta["namespace"], meta["name"])
        view = parse_slice(sl)
        old = self._slices.get(key)
        if old is not None and (view is None or old.service != view.service):
            self.delete_slice(sl)
        if view is not None:
            self._slices[key] = view
            self._slices_of.setdefault((key[0], view.service), set()).add(key[1])
            self._rebuild((key[0], view.service))

    def delete_slice(self, sl: Obj) -> None:
        meta = sl["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self._slices.pop(key, None)
        if old is None:
            return
        skey = (key[0], old.service)
        names = self._slices_of.get(skey)
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._slices_of[skey]
        self._rebuild(skey)

    def _rebuild(self, key: Key) -> None:
        ns = key[0]
        old = self._views.pop(key, None)
        svc = self._services.get(key)
        new = None
        if svc is not None:
            slices = [self._slices[(ns, n)] for n in self._slices_of.get(key, ())]
            new = build_view(svc, slices)
            self._views[key] = new
        if old is not None and new is None:
            self._per_namespace[ns] -= 1
            if not self._per_namespace[ns]:
                del self._per_namespace[ns]
        elif old is None and new is not None:
            self._per_namespace[ns] = self._per_namespace.get(ns, 0) + 1
        if old is not None:
            for ip in self._ptr_targets(old):
                owners = self._ptr.get(ip)
                if owners is not None:
                    owners.pop(key, None)
                    if not owners:
                        del self._ptr[ip]
        if new is not None:
            for ip, targets in self._ptr_targets(new).items():
                self._ptr.setdefault(ip, {})[key] = targets
        self.generation += 1
        self.serial = max(self.serial + 1, int(time.time()))

    def _ptr_targets(self, view: ServiceView) -> dict[IP, set[dns.name.Name]]:
        """Cluster IPs name the Service; endpoint addresses name the endpoint
        (`hostname.svc.ns.svc.zone`, or the dashed address), as CoreDNS does."""
        base = self._service_name(view)
        out: dict[IP, set[dns.name.Name]] = {}
        for ip in view.cluster_ips:
            out.setdefault(ip, set()).add(base)
        for label, ips in view.endpoints.items():
            for ip in ips:
                out.setdefault(ip, set()).add(dns.name.Name((label.encode(), *base.labels)))
        return out

    def _service_name(self, view: ServiceView) -> dns.name.Name:
        return dns.name.Name((view.name.encode(), view.namespace.encode(), b"svc", *self.domain.labels))

    # -- zones ----------------------------------------------------------------

    def zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The apex of the zone of ours that holds `name`, or None (forward it)."""
        if name.is_subdomain(self.domain):
            return self.domain
        for suffix, width, bits in ((IN_ADDR, 4, 8), (IP6, 32, 4)):
            if name.is_subdomain(suffix):
                return self._reverse_zone(name.relativize(suffix).labels[::-1], width, bits, suffix)
        return None

    def _reverse_zone(self, labels: tuple[bytes, ...], width: int, bits: int,
                      suffix: dns.name.Name) -> dns.name.Name | None:
        digits: list[int] = []
        for label in labels[:width]:
            d = _digit(label, bits)
            if d is None:
                break
            digits.append(d)
        best: int | None = None
        for net in self.reverse:
            if (net.version == 4) != (bits == 8):
                continue
            apex_bits = -(-net.prefixlen // bits) * bits  # rounded up to a label boundary
            n = apex_bits // bits
            if n > len(digits):
                continue
            value = 0
            for d in digits[:n]:
                value = (value << bits) | d
            shifted = value << (width * bits - apex_bits)
            prefix_net: Network = ipaddress.IPv4Network((shifted, apex_bits)) if bits == 8 \
                else ipaddress.IPv6Network((shifted, apex_bits))
            if prefix_net.subnet_of(net) and (best is None or n > best):  # type: ignore[arg-type]
                best = n
        if best is None:
            return None
        return dns.name.Name((*labels[:best][::-1], *suffix.labels))

    def _soa(self, zone: dns.name.Name) -> dns.rrset.RRset:
        soa = SOA(IN, TSOA, self.ns_name, self.hostmaster, self.serial, 7200, 1800, 86400, self.ttl)
        return dns.rrset.from_rdata_list(zone, self.ttl, [soa])

    # -- lookups ----------------------------------------------------------------

    def answer(self, qname: dns.name.Name, qtype: int) -> Answer:
        """The answer for a name inside one of our zones (see `zone_of`)."""
        out = Answer()
        name = qname
        for _ in range(8):  # CNAME chain inside our zones, bounded
            zone = self.zone_of(name)
            if zone is None:
                out.cname_target = name
                return out
            node = self._node(name, zone, qtype)
            if node is None:
                out.rcode = dns.rcode.NXDOMAIN
                out.authority.append(self._soa(zone))
                return out
            cname = node.records.get(TCNAME)
            if cname and qtype not in (TCNAME, TANY):
                out.answer.append(dns.rrset.from_rdata_list(name, self.ttl, cname))
                name = cname[0].target  # type: ignore[attr-defined]
                continue
            types = list(node.records) if qtype == TANY else [qtype] if qtype in node.records else []
            for t in types:
                out.answer.append(dns.rrset.from_rdata_list(name, self.ttl, node.records[t]))
            if not types:
                out.authority.append(self._soa(zone))
            if qtype in (TSRV, TANY):
                for target, rdatas in node.glue.items():
                    for t in (TA, TAAAA):
                        rd = [r for r in rdatas if r.rdtype == t]
                        if rd:
                            out.additional.append(dns.rrset.from_rdata_list(target, self.ttl, rd))
            return out
        out.rcode = dns.rcode.SERVFAIL  # a CNAME loop
        return out

    def _node(self, name: dns.name.Name, zone: dns.name.Name, qtype: int) -> _Node | None:
        """The records at `name`, or None when it does not exist. Records that
        do not change whether the name exists may be left out when `qtype`
        does not ask for them (the SRV set of a Service's own name)."""
        rel = [label.decode("latin-1").lower() for label in name.relativize(zone).labels[::-1]]
        if not rel:
            return _Node({TSOA: list(self._soa(zone)), TNS: [NS(IN, TNS, self.ns_name)]})
        if zone != self.domain:
            return self._reverse_node(name)
        top = rel[0]
        if top == "svc":
            return self._svc_node(rel[1:], qtype)
        if top == "pod":
            if len(rel) <= 2:
                return _Node()
            ip = undashed(rel[2]) if len(rel) == 3 else None
            if ip is None:
                return None
            node = _Node()
            _add_addresses(node, [ip])
            return node
        if top == "dns" and len(rel) <= 2:
            if len(rel) == 1:
                return _Node()
            if rel[1] == "ns":
                node = _Node()
                view = self._views.get(DNS_SERVICE)
                _add_addresses(node, view.cluster_ips if view else ())
                return node
        return None

    def _svc_node(self, rel: list[str], qtype: int) -> _Node | None:
        if not rel:
            return _Node()
        if rel[0] not in self._per_namespace:
            return None
        if len(rel) == 1:
            return _Node()  # a namespace with Services: an empty non-terminal
        view = self._views.get((rel[0], rel[1]))
        if view is None:
            return None
        rest = rel[2:]
        node = _Node()
        if not rest:
            if view.kind == "ExternalName":
                if view.external_name:
                    target = dns.name.from_text(view.external_name)
                    node.records[TCNAME] = [CNAME(IN, TCNAME, target)]
                return node
            _add_addresses(node, view.addresses())
            if qtype in (TSRV, TANY):
                self._srv(node, view, lambda p: True)
            return node
        if view.kind == "ExternalName":
            return None
        if rest[0].startswith("_"):
            proto = rest[0][1:]
            if proto not in PROTOCOLS or not any(
                    p.protocol == proto and p.name for p in self._all_ports(view)):
                return None
            if len(rest) == 1:
                return node
            if len(rest) == 2 and rest[1].startswith("_"):
                port_name = rest[1][1:]
                if self._srv(node, view, lambda p: p.protocol == proto and p.name == port_name):
                    return node
            return None
        ips = view.endpoints.get(rest[0]) if len(rest) == 1 else None
        if ips is None:
            return None
        _add_addresses(node, ips)
        return node

    def _all_ports(self, view: ServiceView) -> Iterable[Port]:
        yield from view.ports
        for _, p in view.endpoint_ports:
            yield p

    def _srv(self, node: _Node, view: ServiceView, want: Any) -> bool:
        """SRV records for the ports `want` accepts, their targets as glue.
        True when any port matched (the name exists even with no endpoints)."""
        base = self._service_name(view)
        pairs: list[tuple[dns.name.Name, int, tuple[IP, ...]]] = []
        matched = False
        if view.kind == "Headless":
            matched = any(want(p) for p in view.ports)
            for label, port in view.endpoint_ports:
                if want(port):
                    matched = True
                    target = dns.name.Name((label.encode(), *base.labels))
                    pairs.append((target, port.port, view.endpoints[label]))
        else:
            for port in view.ports:
                if want(port):
                    matched = True
                    pairs.append((base, port.port, view.cluster_ips))
        if pairs:
            w = _weight(len(pairs))
            node.records[TSRV] = [SRV(IN, TSRV, 0, w, port, target) for target, port, _ in pairs]
            for target, _, ips in pairs:
                node.glue.setdefault(target, [_addr_rdata(ip) for ip in ips])
        return matched

    def _reverse_node(self, name: dns.name.Name) -> _Node | None:
        suffix, width, bits = (IN_ADDR, 4, 8) if name.is_subdomain(IN_ADDR) else (IP6, 32, 4)
        labels = name.relativize(suffix).labels[::-1]
        if len(labels) > width or any(_digit(label, bits) is None for label in labels):
            return None
        if len(labels) < width:
            return _Node()  # part of an address range we serve: an empty non-terminal
        try:
            ip = ipaddress.ip_address(dns.reversename.to_address(name))
        except (ValueError, dns.exception.SyntaxError):
            return None
        owners = self._ptr.get(ip)
        if not owners:
            return None
        targets = sorted({t for ts in owners.values() for t in ts})
        return _Node({TPTR: [PTR(IN, TPTR, t) for t in targets]})


def _digit(label: bytes, bits: int) -> int | None:
    """One reverse-name label: a decimal octet (no leading zeros) or a hex nibble."""
    try:
        text = label.decode("ascii")
    except UnicodeDecodeError:
        return None
    if bits == 8:
        if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 255:
            return None
        return int(text)
    if len(text) != 1 or text.lower() not in "0123456789abcdef":
        return None
    return int(text, 16)


__all__ = ["DEFAULT_TTL", "Answer", "ClusterRecords", "ServiceView", "build_view", "dashed",
           "parse_slice", "undashed"]
