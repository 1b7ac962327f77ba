"""pods/NAME/proxy[/PATH] and services/NAME/proxy[/PATH]: an HTTP request
passed to a pod, as upstream's ProxyREST passes it (pkg/registry/core/pod
/rest/subresources.go, service/proxy.go; the proxy handler and transport
of k8s.io/apimachinery/pkg/util/proxy). What `kubectl get --raw
/api/v1/namespaces/NS/services/web:80/proxy/` and a browser behind
`kubectl proxy` use.

NAME is "name", "name:port" or "scheme:name:port", scheme http (the
default) or https; a backend's certificate is not verified. A pod is
reached at its first IP, on the port given or its first declared
containerPort. A service's port number is read as the name of that
service port; the backend is a random ready address of its Endpoints
having that port name, whose pod exists with that IP (upstream's
isValidAddress). Errors are upstream's Status answers.

The request goes on with its method, query, body and headers (less
hop-by-hop ones and the credentials the API server consumed), plus
X-Forwarded-For and X-Forwarded-Uri; the answer comes back with its
status and headers (less hop-by-hop and CORS ones) and its body as it
streams. A Location pointing at the backend or at the API server is
moved under the proxy path, and so are the links of an HTML page, as
upstream's transport rewrites them. A WebSocket is relayed message by
message; other upgrades are refused.

Pod addresses are private to the machine, so before any dial: a pod on a
simulated node (`pinnace sim`) is refused, as nodes/proxy refuses it; and
the kernel is asked which route it would take (RTM_GETROUTE): where that is
the default route, the pod network is not routed here and the request is
refused, so no pod packet ever leaves by the default route.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import posixpath
import random
import re
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from pinnace.api.resources import ResourceInfo
from pinnace.kubelet.rtnl import RTA_DST, RTM_GETROUTE, Message, Rtnl

from . import status
from .nodeproxy import (
    CONNECT_TIMEOUT,
    _dial_error,
    _pass_back,
    _sim_error,
    _unreachable_service,
    is_simulated,
    relay_websocket,
    upgrade,
)
from .registry import ResourceTable
from .rest import Registry
from .status import APIError

if TYPE_CHECKING:
    from .handlers import Target

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
SCHEMES = ("", "http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
HTML_LIMIT = 16 << 20  # a larger page (or one that inflates larger) passes unrewritten
ROUTE_TTL = 1.0  # seconds a route answer is reused

# Hop-by-hop headers (RFC 9110 7.6.1, and what Go's reverse proxy drops).
_HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
_CORS = frozenset({"access-control-allow-credentials", "access-control-allow-headers",
                   "access-control-allow-methods", "access-control-allow-origin"})
# What aiohttp would add on its own: the client's request goes as it came.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_PATH_SAFE = "/$&+,:;=@"  # what Go leaves unescaped in a URL path
_WBITS = {"": 0, "gzip": 31, "deflate": 15}  # zlib's window bits per Content-Encoding

# The URL-valued attributes of each HTML element, which upstream rewrites.
_URL_ATTRIBUTES: dict[str, frozenset[str]] = {tag: frozenset(attrs.split()) for tag, attrs in {
    "a": "href", "applet": "codebase", "area": "href", "audio": "src", "base": "href",
    "blockquote": "cite", "body": "background", "button": "formaction", "command": "icon",
    "del": "cite", "embed": "src", "form": "action", "frame": "longdesc src", "head": "profile",
    "html": "manifest", "iframe": "longdesc src", "img": "longdesc src usemap",
    "input": "src usemap formaction", "ins": "cite", "link": "href",
    "object": "classid codebase data usemap", "q": "cite", "script": "src", "source": "src",
    "video": "poster src"}.items()}

RTM_F_FIB_MATCH = 0x2000  # answer with the matching route, not a clone for the one address
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                       type, flags
_NLA = struct.Struct("=HH")


# -- names and paths ---------------------------------------------------------------

def split_scheme_name_port(id_: str) -> tuple[str, str, str] | None:
    """(scheme, name, port) of "name", "name:port" or "scheme:name:port",
    or None where upstream's SplitSchemeNamePort finds it invalid (no name,
    more parts, a scheme other than http and https). The port may be a name."""
    parts = id_.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in SCHEMES:
        return None
    return scheme, name, port


def _go_int(text: str) -> int | None:
    """``text`` as Go's strconv.ParseInt reads a 64-bit integer, else None
    (Python's int() takes spaces and underscores Go refuses)."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 63) else None


def join_path(*parts: str) -> str:
    """Go's path.Join that keeps a trailing slash (upstream's
    JoinPreservingTrailingSlash): the cleaned path a proxied request goes to."""
    given = [p for p in parts if p]
    if not given:
        return ""
    joined = posixpath.normpath("/".join(given))
    if joined.startswith("//"):  # POSIX keeps two leading slashes; Go does not
        joined = "/" + joined.lstrip("/")
    if given[-1].endswith("/") and not joined.endswith("/"):
        joined += "/"
    return joined


def proxyable(address: str) -> IP | None:
    """The address when upstream would proxy to it (Go's IsGlobalUnicast:
    not loopback, link-local, multicast, unspecified or broadcast)."""
    try:
        ip: IP = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or \
            ip == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return ip


# -- rewriting ---------------------------------------------------------------------

def rewrite_url(url: str, prefix: str, backend_host: str, request_host: str) -> str:
    """``url`` moved under the proxy path ``prefix`` when it points at the
    backend or at the host the client asked (upstream's rewriteURL); an
    address elsewhere, or a relative one, is left as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL (a broken IPv6 host): left alone, as upstream leaves it
        return url
    host = parts.netloc.rpartition("@")[2]
    if (host and host not in (backend_host, request_host)) or not parts.path.startswith("/"):
        return url
    scheme, netloc = (parts.scheme, parts.netloc) if host == request_host else ("", "")
    path = parts.path if parts.path.startswith(prefix) else join_path(prefix, parts.path)
    return urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


class _LinkRewriter(HTMLParser):
    """Collects the start tags whose URL-valued attributes change, where
    they stand in the page: everything else is kept byte for byte."""

    def __init__(self, rewrite: Callable[[str], str]):
        super().__init__(convert_charrefs=True)
        self.rewrite = rewrite
        self.edits: list[tuple[tuple[int, int], str, str]] = []  # (line, column), old, new

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, ">")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, " />")

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], end: str) -> None:
        wanted = _URL_ATTRIBUTES.get(tag)
        if not wanted:
            return
        new = [(k, self.rewrite(v) if k in wanted and v is not None else v) for k, v in attrs]
        if new == attrs:
            return
        text = "".join(f' {k}="{escape(v)}"' if v is not None else f" {k}" for k, v in new)
        self.edits.append((self.getpos(), self.get_starttag_text() or "", f"<{tag}{text}{end}"))


def rewrite_html(page: str, rewrite: Callable[[str], str]) -> str:
    """The page with the URLs of its links passed through ``rewrite``."""
    parser = _LinkRewriter(rewrite)
    parser.feed(page)
    parser.close()
    line_starts = [0] + [m.end() for m in re.finditer("\n", page)]
    out, done = [], 0
    for (line, column), old, new in parser.edits:
        at = line_starts[line - 1] + column
        if page.startswith(old, at):
            out += [page[done:at], new]
            done = at + len(old)
    out.append(page[done:])
    return "".join(out)


def _rewrite_body(body: bytes, encoding: str, rewrite: Callable[[str], str]) -> bytes | None:
    """An HTML body (gzip or deflate encoded, or not) with its links
    rewritten; None where it cannot be read (another encoding, a corrupt or
    oversized stream): it then passes as it came, as upstream lets it."""
    wbits = _WBITS.get(encoding.strip().lower())
    if wbits is None:
        return None
    data = body
    if wbits:
        inflate = zlib.decompressobj(wbits)
        try:
            data = inflate.decompress(body, HTML_LIMIT)
        except zlib.error:
            return None
        if inflate.unconsumed_tail:
            return None
    page = rewrite_html(data.decode("utf-8", "surrogateescape"), rewrite)
    out = page.encode("utf-8", "surrogateescape")
    if wbits:
        deflate = zlib.compressobj(wbits=wbits)
        out = deflate.compress(out) + deflate.flush()
    return out


# -- the route check ------------------------------------------------------------------

def route_prefix(ip: IP) -> int:
    """The prefix length of the route the kernel would send a packet to
    ``ip`` by (0: the default route). RTM_F_FIB_MATCH makes it answer with
    the route that matched, not a host route made for ``ip``. Raises
    OSError where no route leads there (ENETUNREACH)."""
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    dst = ip.packed
    body = (_RTMSG.pack(family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH)
            + _NLA.pack(_NLA.size + len(dst), RTA_DST) + dst)
    with Rtnl(timeout=1.0) as nl:
        reply = nl.run(Message(body, RTM_GETROUTE, what=f"looking up the route to {ip}",
                               answered=True))[0]
    return int(reply[1])


class RouteGuard:
    """Refuses to dial an address the kernel would reach by the default
    route. Each answer is reused for ``ttl`` seconds of ``clock``."""

    def __init__(self, ttl: float = ROUTE_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._answers: dict[IP, tuple[float, int | OSError]] = {}

    async def check(self, ip: IP, hostport: str) -> None:
        now = self.clock()
        known = self._answers.get(ip)
        if known is not None and known[0] > now:
            answer = known[1]
        else:
            try:
                answer = await asyncio.to_thread(route_prefix, ip)
            except OSError as e:
                answer = e
            if len(self._answers) >= 4096:  # a burst of addresses: keep the live ones
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            self._answers[ip] = (now + self.ttl, answer)
        if isinstance(answer, OSError):
            why = os.strerror(answer.errno).lower() if answer.errno else str(answer)
            raise _unreachable_service(f"dial tcp {hostport}: connect: {why}")
        if answer == 0:
            raise _unreachable_service(
                f"refusing to dial {hostport}: this machine would send it by its default route, "
                "and pinnace does not send pod traffic by the default route (no node here "
                "routes the pod network to that address)")


# -- the proxy ------------------------------------------------------------------------

@dataclass(frozen=True)
class Backend:
    """Where a proxied request goes: ``host`` is the URL's host as upstream
    writes it (with the port only where one was named), what a Location
    pointing back at the backend carries."""

    scheme: str
    ip: IP
    port: int
    host: str

    @property
    def hostport(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


def _backend(scheme: str, ip: IP, port: str) -> Backend:
    """The backend at ``ip`` on ``port`` (a number, a service name as Go's
    dialer looks it up, or "" for the scheme's)."""
    scheme = scheme or "http"
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    if not port:
        return Backend(scheme, ip, DEFAULT_PORTS[scheme], shown)
    if port.isascii() and port.isdigit():
        number = int(port)
        if not 0 < number < 65536:
            raise _unreachable_service(f"dial tcp: address {port}: invalid port")
    else:
        try:
            number = socket.getservbyname(port, "tcp")
        except OSError:
            raise _unreachable_service(f"dial tcp: lookup tcp/{port}: unknown port") from None
    return Backend(scheme, ip, number, f"{shown}:{port}")


def _service_unavailable(message: str) -> APIError:
    return APIError(503, "ServiceUnavailable", message)


def _rotated(items: list[Any]) -> list[Any]:
    """``items`` from a random one on, as upstream spreads requests."""
    start = random.randrange(len(items)) if items else 0
    return items[start:] + items[:start]


def _hop_by_hop(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """The hop-by-hop headers of a message: the standard ones and those its
    Connection header names."""
    named = {h.strip().lower() for v in headers.getall("Connection", []) for h in v.split(",")}
    return _HOP_BY_HOP | named


def _request_headers(request: web.Request, forwarded_uri: str) -> CIMultiDict[str]:
    """The client's headers for the backend, as upstream sends them: the
    credentials the API server consumed (Authorization, Impersonate-*) and
    hop-by-hop headers dropped; the client's Host kept; X-Forwarded-For and
    X-Forwarded-Uri added. Expect goes too: the body is read already, and
    aiohttp would hold it back until the backend said 100 Continue."""
    drop = _hop_by_hop(request.headers) | {"authorization", "content-length", "expect"}
    out = CIMultiDict((k, v) for k, v in request.headers.items()
                      if k.lower() not in drop and not k.lower().startswith("impersonate-"))
    if request.remote:
        out["X-Forwarded-For"] = ", ".join([*request.headers.getall("X-Forwarded-For", []),
                                            request.remote])
    out["X-Forwarded-Uri"] = forwarded_uri
    return out


class PodProxy:
    """Serves pods/NAME/proxy and services/NAME/proxy."""

    def __init__(self, registry: Registry, table: ResourceTable):
        self.registry = registry
        self.table = table
        self.routes = RouteGuard()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.Request, t: Target) -> web.StreamResponse:
        """Resolve the backend, then send the request there (a path-less GET
        is first sent back to the same path with a slash, as upstream does)."""
        if request.method not in PROXY_METHODS:
            raise status.method_not_allowed()
        assert t.namespace is not None and t.name is not None
        if t.info.resource == "pods":
            backend = await self._pod(t.namespace, t.name)
        else:
            backend = await self._service(t.namespace, t.name)
        if upgrade(request) not in ("", "websocket"):
            raise status.bad_request(
                f"pinnace relays only WebSocket upgrades through {t.info.resource}/proxy; this "
                f"client asked to upgrade to {request.headers.get('Upgrade')}")
        path = join_path("/" + t.path if t.path else "", "/" if request.path.endswith("/") else "")
        if not path and request.method in ("GET", "HEAD"):
            query = request.raw_path.partition("?")[2]
            return web.Response(status=301, headers={
                "Location": f"{request.path}/{'?' + query if query else ''}"})
        prefix = f"/api/v1/namespaces/{t.namespace}/{t.info.resource}/{t.name}/proxy"
        await self.routes.check(backend.ip, backend.hostport)
        return await self.forward(request, backend, path or "/", prefix)

    async def forward(self, request: web.Request, backend: Backend, path: str,
                      prefix: str) -> web.StreamResponse:
        """The request sent to ``backend`` at ``path`` and its answer passed
        back, Location and HTML links moved under ``prefix`` (the proxy path
        the client used)."""
        query = request.raw_path.partition("?")[2]
        url = yarl.URL(f"{backend.scheme}://{backend.hostport}{quote(path, safe=_PATH_SAFE)}"
                       + (f"?{query}" if query else ""), encoded=True)
        headers = _request_headers(request, join_path(prefix, path))

        def rewrite(url: str) -> str:
            return rewrite_url(url, prefix, backend.host, request.host)

        if upgrade(request) == "websocket":
            return await self._websocket(request, backend, url, headers, rewrite)
        body = await request.read() if request.can_read_body else None
        session = self._client()

        try:
            answer = await session.request(
                request.method, url, data=body, allow_redirects=False,
                headers=headers, skip_auto_headers=_NO_AUTO_HEADERS)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable_service(_dial_error(backend.hostport, e)) from None
        try:
            resp = web.StreamResponse(status=answer.status, reason=answer.reason)
            drop = _hop_by_hop(answer.headers) | _CORS
            for key, value in answer.headers.items():
                if key.lower() not in drop:
                    resp.headers.add(key, rewrite(value) if key.lower() == "location" else value)
            kind = answer.headers.get("Content-Type", "").partition(";")[0].strip().lower()
            if kind == "text/html" and "Location" not in answer.headers and \
                    request.method != "HEAD":
                return await _pass_back_html(request, answer, resp, rewrite)
            return await _pass_back(request, answer, resp)
        finally:
            answer.release()

    async def _websocket(self, request: web.Request, backend: Backend, url: yarl.URL,
                         headers: CIMultiDict[str],
                         rewrite: Callable[[str], str]) -> web.StreamResponse:
        """The client's WebSocket relayed to the backend's; failing to
        reach it, or its refusal, is the client's answer, and a redirect is
        passed back, never followed (it could lead anywhere)."""
        for key in [k for k in headers if k.lower().startswith("sec-websocket-")]:
            del headers[key]  # the backend's handshake is aiohttp's own
        try:
            return await relay_websocket(
                request, self._client(),
                url.with_scheme("wss" if backend.scheme == "https" else "ws"), headers)
        except _Redirected as e:
            return web.Response(status=e.status, headers={"Location": rewrite(e.location)})
        except aiohttp.WSServerHandshakeError as e:
            return web.Response(status=e.status, text=e.message)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise _unreachable_service(_dial_error(backend.hostport, e)) from None

    # -- where a request goes -----------------------------------------------------------

    async def _pod(self, ns: str, id_: str) -> Backend:
        """Upstream's pod ResourceLocation, then the simulated-node refusal."""
        parsed = split_scheme_name_port(id_)
        if parsed is None:
            raise status.bad_request(f"invalid pod request {json.dumps(id_)}")
        scheme, name, port = parsed
        pod = await self.registry.get(self._info("pods"), ns, name)
        spec, st = pod.get("spec") or {}, pod.get("status") or {}
        if not port:
            port = next((str(c["ports"][0].get("containerPort", ""))
                         for c in spec.get("containers") or [] if c.get("ports")), "")
        ips = [p.get("ip", "") for p in st.get("podIPs") or []] or [st.get("podIP", "")]
        ip = proxyable(ips[0] or "")
        if ip is None:
            raise status.bad_request("address not allowed")
        node = spec.get("nodeName") or ""
        if await self._simulated(node):
            raise _unreachable_service(_sim_error(node))
        return _backend(scheme, ip, port)

    async def _service(self, ns: str, id_: str) -> Backend:
        """Upstream's service ResourceLocation; an address whose pod runs on
        a simulated node is passed over (and named, if nothing else is left)."""
        parsed = split_scheme_name_port(id_)
        if parsed is None:
            raise status.bad_request(f"invalid service request {json.dumps(id_)}")
        scheme, name, port_name = parsed
        number = _go_int(port_name)
        if number is not None:
            svc = await self.registry.get(self._info("services"), ns, name)
            port = next((p for p in (svc.get("spec") or {}).get("ports") or []
                         if p.get("port") == number), None)
            if port is None:
                raise _service_unavailable(
                    f"no service port {number} found for service {json.dumps(name)}")
            port_name = port.get("name", "")
        endpoints = await self.registry.get(self._info("endpoints"), ns, name)
        subsets = endpoints.get("subsets") or []
        if not subsets:
            raise _service_unavailable(f"no endpoints available for service {json.dumps(name)}")
        simulated = ""
        for subset in _rotated(subsets):
            port_number = next((p.get("port") for p in subset.get("ports") or []
                                if p.get("name", "") == port_name), None)
            if port_number is None:
                continue
            for address in _rotated(subset.get("addresses") or []):
                pod = await self._endpoint_pod(ns, address)
                ip = proxyable(address.get("ip", ""))
                if pod is None or ip is None:
                    continue
                nodes = {address.get("nodeName") or "",
                         (pod.get("spec") or {}).get("nodeName") or ""}
                sim = [n for n in sorted(nodes) if await self._simulated(n)]
                if sim:
                    simulated = sim[0]
                    continue
                return _backend(scheme, ip, str(port_number))
        if simulated:
            raise _unreachable_service(_sim_error(simulated))
        raise _service_unavailable(f"no endpoints available for service {json.dumps(id_)}")

    async def _endpoint_pod(self, ns: str, address: dict[str, Any]) -> dict[str, Any] | None:
        """The pod an endpoint address stands for, if it exists here with
        that IP (upstream's isValidAddress); None otherwise."""
        ref = address.get("targetRef") or {}
        if not ref.get("name") or ref.get("namespace") != ns:
            return None
        try:
            pod = await self.registry.get(self._info("pods"), ns, ref["name"])
        except APIError as e:
            if e.code == 404:
                return None
            raise
        st = pod.get("status") or {}
        ips = {p.get("ip") for p in st.get("podIPs") or []} | {st.get("podIP")}
        return pod if address.get("ip") in ips else None

    async def _simulated(self, node_name: str) -> bool:
        """Whether the named node is simulated: its pods exist nowhere, and
        their addresses must not be dialed."""
        if not node_name:
            return False
        try:
            return is_simulated(await self.registry.get(self._info("nodes"), None, node_name))
        except APIError as e:
            if e.code == 404:
                return False
            raise

    def _info(self, resource: str) -> ResourceInfo:
        info = self.table.lookup("", "v1", resource)
        assert info is not None
        return info

    def _client(self) -> aiohttp.ClientSession:
        """One session for every backend: no certificate check (as upstream's
        proxy transport), no cookie jar (answers to one user must not reach
        another), a fresh connection per request (a pod may be gone since)."""
        if self._session is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            redirects = aiohttp.TraceConfig()
            redirects.on_request_redirect.append(_refuse_redirect)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, limit=0, force_close=True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT,
                                              connect=CONNECT_TIMEOUT),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                trace_configs=[redirects])
        return self._session


class _Redirected(Exception):
    """A backend redirected a request the session would have followed."""

    def __init__(self, status: int, location: str):
        super().__init__(f"{status} to {location}")
        self.status, self.location = status, location


async def _refuse_redirect(session: aiohttp.ClientSession, ctx: Any,
                           params: aiohttp.TraceRequestRedirectParams) -> None:
    """Stop a redirect before it is followed: aiohttp's WebSocket handshake
    follows them and has no switch for it; a redirect may point at any
    address, past the route check."""
    params.response.release()
    raise _Redirected(params.response.status, params.response.headers.get("Location", ""))


async def _pass_back_html(request: web.Request, answer: aiohttp.ClientResponse,
                          resp: web.StreamResponse,
                          rewrite: Callable[[str], str]) -> web.StreamResponse:
    """An HTML page read whole, its links rewritten (in a worker thread: a
    large page takes a while to parse), and sent; one over HTML_LIMIT is
    passed on as it comes."""
    body = bytearray()
    async for chunk in answer.content.iter_any():
        body += chunk
        if len(body) > HTML_LIMIT:
            await resp.prepare(request)
            await resp.write(bytes(body))
            return await _pass_back(request, answer, resp)
    new = await asyncio.to_thread(_rewrite_body, bytes(body),
                                  answer.headers.get("Content-Encoding", ""), rewrite)
    page = bytes(body) if new is None else new
    resp.headers["Content-Length"] = str(len(page))
    await resp.prepare(request)
    await resp.write(page)
    await resp.write_eof()
    return resp


__all__ = ["Backend", "PodProxy", "RouteGuard", "join_path", "proxyable", "rewrite_html",
           "rewrite_url", "route_prefix", "split_scheme_name_port"]
